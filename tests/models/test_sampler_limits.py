"""The sampler honours the schema's max_conditions: nothing is left for conform to truncate."""

from __future__ import annotations

import copy

import numpy as np
import torch

from medsynth.encoding.vocabulary import EOS, build_vocabulary
from medsynth.models.artifact import build_network
from medsynth.schema import parse_schema
from tests.models.conftest import TINY_NET, sample_unconditioned, small_schema


def test_untrained_sampler_never_exceeds_max_conditions():
    doc = copy.deepcopy(small_schema().raw)
    doc["limits"]["max_conditions"] = 1  # two condition slots, at most one present
    vocab = build_vocabulary(parse_schema(doc))
    torch.manual_seed(0)
    net = build_network(vocab, TINY_NET)
    sampled = sample_unconditioned(net, vocab, 400, seed=1)
    cond = [j for j, s in enumerate(vocab.slots) if s.kind == "condition"]
    absent = np.array([vocab.slots[j].first for j in cond])
    present = (sampled.prefix[:, cond] != absent).sum(axis=1)
    assert present.max() == 1  # a random network would give both to about a quarter of rows
    assert (present == 1).sum() > 50


def _sample(doc: dict, n: int = 300):
    vocab = build_vocabulary(parse_schema(doc))
    torch.manual_seed(0)
    net = build_network(vocab, TINY_NET)
    with torch.no_grad():
        net.head.bias[EOS] += 3.0  # a network eager to end records
    sampled = sample_unconditioned(net, vocab, n, seed=2)
    return np.bincount(sampled.event_row, minlength=n)


def test_untrained_sampler_honours_min_events_total():
    doc = copy.deepcopy(small_schema().raw)
    free = _sample(doc)
    assert (free < 3).sum() > 50  # it ends many records early when nothing stops it
    doc["limits"]["min_events_total"] = 3
    bound = _sample(doc)
    assert bound.min() >= 3
    assert bound.max() <= doc["limits"]["max_events_total"]
