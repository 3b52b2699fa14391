"""The transition bias: its index is right, sampling feeds what training computes, it learns
persistence, and old configs load without it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from medsynth.cohort import Cohort
from medsynth.encoding.vocabulary import EOS, build_vocabulary
from medsynth.errors import DataError
from medsynth.models.artifact import build_network
from medsynth.models.network import NetworkConfig, latest_values
from tests.models.conftest import (
    TINY_NET,
    fit_quickly,
    record_sampling,
    simulated_batch,
    step_through,
)

STEPS = 2
# Scale 1 and no prefix bias, so the weights read directly as logits.
NET = dataclasses.replace(
    TINY_NET, transition_steps=STEPS, transition_scale=1.0, prefix_bias=False, smooth_bias=False
)


def _random_weights(net) -> None:
    torch.manual_seed(3)
    torch.nn.init.normal_(net.transition.weight.weight, std=1.0)


def test_latest_values_forward_fills_each_channel(small):
    vocab = build_vocabulary(small)
    a, b = vocab.value_first["systolic_bp"], vocab.value_first["glucose"]
    seq = torch.tensor([[1, 2, a + 3, b + 1, a + 5, 2]])  # 1, 2: tokens that are not values
    got = latest_values(seq, torch.as_tensor(vocab.token_channel), len(small.channels))[0]
    sbp, glu = small.channel_names.index("systolic_bp"), small.channel_names.index("glucose")
    assert got[:, sbp].tolist() == [-1, -1, a + 3, a + 3, a + 5, a + 5]
    assert got[:, glu].tolist() == [-1, -1, -1, b + 1, b + 1, b + 1]


def test_bias_is_the_weight_of_channel_and_clamped_step(small):
    vocab = build_vocabulary(small)
    net = build_network(vocab, NET)
    _random_weights(net)
    t = net.transition
    n_ch, width = len(small.channels), 2 * STEPS + 2
    sbp = small.channel_names.index("systolic_bp")
    first, n_bins = vocab.value_first["systolic_bp"], len(vocab.value_edges["systolic_bp"]) - 1
    latest = torch.full((1, n_ch), -1)
    latest[0, sbp] = first + 4  # last systolic value in bin 4; the other channels unseen
    bias = t(latest)[0]
    w = t.weight.weight.detach().reshape(-1)  # channel-major: c * width + step
    for k in range(n_bins):
        step = min(max(k - 4, -STEPS), STEPS) + STEPS
        assert bias[first + k - vocab.value_start] == w[sbp * width + step]
    for c, name in enumerate(small.channel_names):
        if c != sbp:
            j = vocab.value_first[name] - vocab.value_start
            assert bias[j] == w[c * width + width - 1]  # "unseen"


def test_cached_steps_equal_the_full_forward_pass(small):
    vocab = build_vocabulary(small)
    torch.manual_seed(0)
    net = build_network(vocab, NET).eval()
    _random_weights(net)
    batch = simulated_batch(vocab)
    latest = latest_values(batch.inputs, torch.as_tensor(vocab.token_channel), 3)
    with torch.no_grad():
        full = net(batch.inputs, batch.slots, batch.times)
        plain = dataclasses.replace(NET, transition_steps=0)
        assert not torch.allclose(full, _without_bias(net, plain, batch))  # the bias is live
    steps = step_through(net, batch, per_position={"latest": latest})
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)
    with pytest.raises(DataError, match="latest"):
        net.step(batch.inputs[:, 0], batch.slots[:, 0], batch.times[:, 0], 0, [])


def _without_bias(net, plain_config, batch) -> torch.Tensor:
    saved = net.config
    net.config = plain_config
    try:
        return net(batch.inputs, batch.slots, batch.times)
    finally:
        net.config = saved


def test_sampler_feeds_what_training_computes(small):
    vocab = build_vocabulary(small)
    torch.manual_seed(1)
    net = build_network(vocab, NET)
    _random_weights(net)
    rec = record_sampling(net, vocab, 16)
    tokens = torch.stack(rec.tokens, dim=1)
    fed = torch.stack(rec.latest, dim=1)
    assert (fed >= 0).sum() > 0
    expected = latest_values(tokens, torch.as_tensor(vocab.token_channel), 3)
    ended = (tokens == EOS).long().cumsum(dim=1)
    live = (ended == 0) | ((ended == 1) & (tokens == EOS))
    assert torch.equal(fed[live], expected[live])


def _persistent_cohort(schema, n: int) -> Cohort:
    """Each patient holds one systolic level (drawn per patient) at three visits."""
    rng = np.random.default_rng(0)
    ids = [f"p{i}" for i in range(n)]
    level = rng.uniform(95, 175, n)
    events = pd.DataFrame(
        {
            "patient_id": np.repeat(ids, 3),
            "time": np.tile([0.0, 100.0, 200.0], n),
            "channel": "systolic_bp",
            "value": np.repeat(level, 3).round(0),
        }
    )
    patients = pd.DataFrame({"patient_id": ids, "sex": "female", "age": 50.0})
    empty = pd.DataFrame({"patient_id": [], "code": [], "onset": []})
    return Cohort.conform(schema, patients, events, empty)[0]


def test_learns_that_values_persist(small):
    cohort = _persistent_cohort(small, 300)
    vocab, net = fit_quickly(cohort, NET)
    sbp = small.channel_names.index("systolic_bp")
    w = net.transition.weight.weight[sbp, : 2 * STEPS + 1].detach()
    assert int(w.argmax()) == STEPS  # "same bin as last time" gets the largest weight
    assert float(w[STEPS] - w[[0, -1]].max()) > 0.3


def test_config_field_is_optional_and_checked():
    assert NetworkConfig.from_dict({"d_model": 32}).transition_steps == 0
    assert NetworkConfig.from_dict({"transition_steps": 3}).transition_steps == 3
    for bad in (True, -1, 65, 2.5):
        with pytest.raises(DataError, match="transition_steps"):
            NetworkConfig.from_dict({"transition_steps": bad})


def test_scale_multiplies_the_bias_and_old_configs_read_as_scale_one(small):
    vocab = build_vocabulary(small)
    plain = build_network(vocab, NET)
    scaled = build_network(vocab, dataclasses.replace(NET, transition_scale=4.0))
    _random_weights(plain)
    scaled.transition.weight.load_state_dict(plain.transition.weight.state_dict())
    latest = torch.full((1, len(small.channels)), -1)
    latest[0, 0] = vocab.value_first[small.channel_names[0]] + 2
    torch.testing.assert_close(scaled.transition(latest), 4.0 * plain.transition(latest))
    assert NetworkConfig.from_dict({"transition_steps": 2}).transition_scale == 1.0
    with pytest.raises(DataError, match="transition_scale"):
        NetworkConfig.from_dict({"transition_scale": 0})
