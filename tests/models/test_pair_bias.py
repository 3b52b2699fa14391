"""The pair bias: cached sampling steps equal training's forward pass, the sampler feeds the
counts of the values it drew, it learns how one channel's value moves another's, and old
configs load without it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from medsynth.cohort import Cohort
from medsynth.encoding.vocabulary import build_vocabulary
from medsynth.errors import DataError
from medsynth.models.artifact import build_network
from medsynth.models.network import NetworkConfig, value_counts
from tests.models.conftest import (
    TINY_NET,
    fit_quickly,
    forward_with_and_without,
    one_visit_cohort,
    record_sampling,
    simulated_batch,
    small_schema,
    step_through,
)

NET = dataclasses.replace(
    TINY_NET, pair_bias=True, prefix_bias=False, transition_steps=0, smooth_bias=False
)


def test_counts_are_the_value_tokens_so_far(small):
    vocab = build_vocabulary(small)
    first, n_values = vocab.value_start, vocab.size - vocab.value_start
    tokens = torch.tensor([[1, first + 2, 5, first + 2, first]])  # 1 and 5 are not values
    got = value_counts(tokens, first, n_values)[0]
    assert got.shape == (5, n_values)
    assert got[0].sum() == 0 and got[1, 2] == 1 and got[2, 2] == 1
    assert got[3, 2] == 2 and got[4, 0] == 1 and got[4].sum() == 3


def test_cached_steps_equal_the_full_forward_pass(small):
    vocab = build_vocabulary(small)
    torch.manual_seed(0)
    net = build_network(vocab, NET).eval()
    torch.nn.init.normal_(net.pairs.weight, std=1.0)
    batch = simulated_batch(vocab)
    counts = value_counts(batch.inputs, vocab.value_start, vocab.size - vocab.value_start)
    assert counts.sum() > 0  # the cohort has values, so the bias is exercised
    full = forward_with_and_without(net, batch, dataclasses.replace(NET, pair_bias=False))
    steps = step_through(net, batch, per_position={"counts": counts})
    torch.testing.assert_close(steps, full)
    with pytest.raises(DataError, match="counts"):
        net.step(batch.inputs[:, 0], batch.slots[:, 0], batch.times[:, 0], 0, [])


def test_sampler_feeds_the_counts_of_what_it_drew(small):
    vocab = build_vocabulary(small)
    torch.manual_seed(1)
    rec = record_sampling(build_network(vocab, NET), vocab, 8)
    drawn = torch.stack(rec.tokens, dim=1)
    expected = value_counts(drawn, vocab.value_start, vocab.size - vocab.value_start)
    fed = torch.stack(rec.counts, dim=1)
    assert fed[:, -1].sum() > 0  # values were drawn
    torch.testing.assert_close(fed, expected)


def _cohort_where_glucose_follows_blood_pressure(schema, n: int) -> Cohort:
    """One visit each: systolic pressure high or normal, glucose high exactly when it is high."""
    rng = np.random.default_rng(0)
    high = rng.random(n) < 0.5
    sbp = np.where(high, rng.uniform(165, 185, n), rng.uniform(105, 120, n)).round(0)
    glucose = np.where(high, rng.uniform(180, 260, n), rng.uniform(75, 95, n)).round(0)
    return one_visit_cohort(schema, sbp, glucose)


def test_learns_how_one_value_moves_another():
    schema = small_schema(1)
    cohort = _cohort_where_glucose_follows_blood_pressure(schema, 300)
    vocab, net = fit_quickly(cohort, NET)

    def token(channel: str, value: float) -> int:  # index among the value tokens
        edges = vocab.value_edges[channel]
        start = vocab.value_first[channel] - vocab.value_start
        return start + int(np.searchsorted(edges, value, side="right")) - 1

    w = net.config.pair_scale * net.pairs.weight.detach()  # [to, from], in logit units
    high_glucose = token("glucose", 220.0)
    # high glucose is favoured after a high systolic pressure over after a normal one
    margin = (
        w[high_glucose, token("systolic_bp", 175.0)] - w[high_glucose, token("systolic_bp", 112.0)]
    )
    assert float(margin) > 1.0  # about 4 measured


def test_config_field_is_optional_and_checked():
    assert NetworkConfig.from_dict({"d_model": 32}).pair_bias is False
    assert NetworkConfig.from_dict({"pair_bias": True}).pair_bias is True
    assert NetworkConfig.from_dict({"pair_bias": True}).pair_scale == 1.0
    assert NetworkConfig().pair_bias is False and NetworkConfig().pair_scale == 10.0
    with pytest.raises(DataError, match="pair_bias"):
        NetworkConfig.from_dict({"pair_bias": "yes"})
    for bad in (0, -2.0, True):
        with pytest.raises(DataError, match="pair_scale"):
            NetworkConfig.from_dict({"pair_scale": bad})
