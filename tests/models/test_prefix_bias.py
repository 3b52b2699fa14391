"""The prefix bias: sampling sees what training computes, it learns how a condition shifts a
channel, and old configs load without it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from medsynth.cohort import Cohort
from medsynth.encoding.vocabulary import build_vocabulary
from medsynth.errors import DataError
from medsynth.models.artifact import build_network
from medsynth.models.network import NetworkConfig
from tests.models.conftest import (
    TINY_NET,
    fit_quickly,
    forward_with_and_without,
    record_sampling,
    simulated_batch,
    step_through,
)

NET = dataclasses.replace(TINY_NET, prefix_bias=True, transition_steps=0, smooth_bias=False)


def test_cached_steps_equal_the_full_forward_pass_after_the_prefix(small):
    vocab = build_vocabulary(small)
    torch.manual_seed(0)
    net = build_network(vocab, NET).eval()
    torch.nn.init.normal_(net.prefix_weights.weight, std=1.0)
    batch = simulated_batch(vocab)
    prefix = batch.inputs[:, 1 : 1 + vocab.n_prefix]
    full = forward_with_and_without(net, batch, dataclasses.replace(NET, prefix_bias=False))
    steps = step_through(net, batch, prefix=prefix)
    after = slice(vocab.n_prefix, None)  # from the position after the last prefix token on
    torch.testing.assert_close(steps[:, after], full[:, after])


def _cohort_where_a_condition_raises_glucose(schema, n: int) -> Cohort:
    rng = np.random.default_rng(0)
    ids = [f"p{i}" for i in range(n)]
    diabetic = rng.random(n) < 0.5
    glucose = np.where(diabetic, rng.uniform(180, 260, n), rng.uniform(75, 95, n)).round(0)
    events = pd.DataFrame({"patient_id": ids, "time": 0.0, "channel": "glucose", "value": glucose})
    patients = pd.DataFrame({"patient_id": ids, "sex": "female", "age": 50.0})
    cond = pd.DataFrame({"patient_id": np.array(ids)[diabetic], "code": "44054006", "onset": 0.0})
    return Cohort.conform(schema, patients, events, cond)[0]


def test_learns_how_a_condition_shifts_a_channel(small):
    cohort = _cohort_where_a_condition_raises_glucose(small, 300)
    vocab, net = fit_quickly(cohort, NET)
    slot = next(s for s in vocab.slots if s.kind == "condition" and s.name.endswith("44054006"))
    absent, onset0 = slot.first, slot.first + 1  # "absent", then "at start"
    edges = vocab.value_edges["glucose"]
    first = vocab.value_first["glucose"] - vocab.value_start
    high = first + int(np.searchsorted(edges, 200.0, side="right")) - 1
    w = net.config.prefix_scale * net.prefix_weights.weight.detach()  # in logit units
    # high glucose is favoured by "diabetes at start" over "no diabetes"
    assert float(w[onset0, high] - w[absent, high]) > 0.3


def test_config_field_is_optional_and_checked():
    assert NetworkConfig.from_dict({"d_model": 32}).prefix_bias is False
    assert NetworkConfig.from_dict({"prefix_bias": True}).prefix_bias is True
    # configs stored before the scale existed were trained at scale 1
    assert NetworkConfig.from_dict({"prefix_bias": True}).prefix_scale == 1.0
    assert NetworkConfig.from_dict({"prefix_scale": 4}).prefix_scale == 4.0
    with pytest.raises(DataError, match="prefix_bias"):
        NetworkConfig.from_dict({"prefix_bias": 1})
    for bad in (0, -1.0, True, "10"):
        with pytest.raises(DataError, match="prefix_scale"):
            NetworkConfig.from_dict({"prefix_scale": bad})


def test_bias_is_the_scaled_sum_of_the_prefix_rows(small):
    vocab = build_vocabulary(small)
    net = build_network(vocab, dataclasses.replace(NET, prefix_scale=3.0))
    torch.nn.init.normal_(net.prefix_weights.weight, std=1.0)
    prefix = torch.tensor([[3, 7, 23, 33]])  # a token of each prefix slot
    logits = torch.zeros(1, vocab.size)
    got = net._add_prefix(logits, prefix)[0]
    w = net.prefix_weights.weight.detach()
    expected = 3.0 * w[[3, 7, 23, 33]].sum(dim=0)
    torch.testing.assert_close(got[vocab.value_start :], expected)
    assert (got[: vocab.value_start] == 0).all()


def test_sampler_passes_the_drawn_prefix_at_every_event_step(small):
    vocab = build_vocabulary(small)
    torch.manual_seed(1)
    rec = record_sampling(build_network(vocab, NET), vocab, 8)
    drawn = torch.stack(rec.tokens, dim=1)[:, 1 : 1 + vocab.n_prefix]  # in schema order here
    events = rec.prefix[vocab.n_prefix :]
    assert events and all(p is not None and torch.equal(p, drawn) for p in events)
