"""The smooth bias: its sources and basis, cached sampling steps equal training's forward pass,
it learns a linear relation between two channels and a diagnosis' tilt, and old configs load
without it."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from medsynth.cohort import Cohort
from medsynth.encoding.vocabulary import build_vocabulary
from medsynth.errors import DataError
from medsynth.models.artifact import build_network
from medsynth.models.network import NetworkConfig, latest_values
from medsynth.schema import parse_schema
from tests.models.conftest import (
    TINY_NET,
    fit_quickly,
    forward_with_and_without,
    one_visit_cohort,
    simulated_batch,
    small_schema,
    step_through,
)

NET = dataclasses.replace(TINY_NET, smooth_bias=True, prefix_bias=False, transition_steps=0)


def test_bias_is_a_quadratic_in_the_bin_rank_per_channel(small):
    vocab = build_vocabulary(small)
    net = build_network(vocab, NET)
    smooth = net.smooth
    n_ch = len(small.channels)
    assert smooth.n_sources == 1 + vocab.value_start + 2 * n_ch
    with torch.no_grad():
        smooth.linear.weight.zero_()
        smooth.linear.weight[0, 0] = 1.0  # channel 0's slope from the constant source
        smooth.linear.weight[1, 0] = 1.0  # channel 0's curvature from the constant source
    latest = torch.full((1, n_ch), -1)
    bias = smooth(smooth.prefix_counts(None, 1), latest)[0]
    chan = smooth.chan
    assert torch.all(bias[chan != 0] == 0)
    first = vocab.value_first[small.channels[0].name] - vocab.value_start
    n_bins = len(vocab.value_edges[small.channels[0].name]) - 1
    x = 2.0 * (torch.arange(n_bins) + 0.5) / n_bins - 1.0
    expected = NET.smooth_scale * (x + x * x - 1.0 / 3.0)
    torch.testing.assert_close(bias[first : first + n_bins], expected)


def test_sources_read_the_prefix_and_latest_values(small):
    vocab = build_vocabulary(small)
    smooth = build_network(vocab, NET).smooth
    prefix = torch.tensor([[3, 3, 5]])
    counts = smooth.prefix_counts(prefix, 1)
    assert counts[0, 3] == 2 and counts[0, 5] == 1 and counts.sum() == 3
    # channel 1 seen at its top bin: its "x" source is close to 1 and its "seen" source is 1
    name = small.channels[1].name
    top = vocab.value_first[name] + len(vocab.value_edges[name]) - 2
    latest = torch.tensor([[-1, top, -1]])
    n_src = smooth.n_sources
    n_ch = len(small.channels)
    with torch.no_grad():
        smooth.linear.weight.zero_()
        x_src = 1 + vocab.value_start + n_ch + 1  # after the constant, prefix and seen sources
        assert x_src < n_src
        smooth.linear.weight[2 * 2, x_src] = 1.0  # channel 2's slope follows channel 1's value
    bias = smooth(counts, latest)[0]
    chan2 = smooth.chan == 2
    assert torch.all(bias[~chan2] == 0)
    ranks = vocab.token_rank[vocab.value_start :][chan2.numpy()]
    top_x = 2.0 * vocab.token_rank[top] - 1.0
    torch.testing.assert_close(
        bias[chan2], NET.smooth_scale * top_x * (2.0 * torch.as_tensor(ranks) - 1.0)
    )


def test_cached_steps_equal_the_full_forward_pass(small):
    vocab = build_vocabulary(small)
    torch.manual_seed(0)
    net = build_network(vocab, NET).eval()
    torch.nn.init.normal_(net.smooth.linear.weight, std=0.3)
    batch = simulated_batch(vocab)
    full = forward_with_and_without(net, batch, dataclasses.replace(NET, smooth_bias=False))
    latest = latest_values(batch.inputs, net.token_channel, net.n_channels)
    prefix = batch.inputs[:, 1 : 1 + vocab.n_prefix]
    steps = step_through(net, batch, per_position={"latest": latest}, prefix=prefix)
    torch.testing.assert_close(steps, full)
    with pytest.raises(DataError, match="latest"):
        net.step(batch.inputs[:, 0], batch.slots[:, 0], batch.times[:, 0], 0, [])


def _cohort_where_glucose_follows_blood_pressure(schema, n: int) -> Cohort:
    """One visit each: glucose rises linearly with systolic pressure, plus noise."""
    rng = np.random.default_rng(0)
    sbp = rng.uniform(95, 190, n).round(0)
    glucose = (70 + 1.6 * (sbp - 95) + rng.normal(0, 8, n)).clip(50, 400).round(0)
    return one_visit_cohort(schema, sbp, glucose)


def test_learns_a_linear_relation_between_two_channels():
    schema = small_schema(1)
    cohort = _cohort_where_glucose_follows_blood_pressure(schema, 300)
    vocab, net = fit_quickly(cohort, NET)
    names = [c.name for c in schema.channels]
    g, s = names.index("glucose"), names.index("systolic_bp")
    x_src = 1 + vocab.value_start + len(names) + s
    slope = net.config.smooth_scale * float(net.smooth.linear.weight[2 * g, x_src].detach())
    # glucose's slope over its bins rises with systolic pressure's position in its bins
    assert slope > 1.0  # about 2.7 measured


def test_config_field_is_optional_and_checked():
    assert NetworkConfig.from_dict({"d_model": 32}).smooth_bias is False
    assert NetworkConfig.from_dict({"smooth_bias": True}).smooth_scale == 1.0
    assert NetworkConfig().smooth_bias is True and NetworkConfig().smooth_scale == 10.0
    with pytest.raises(DataError, match="smooth_bias"):
        NetworkConfig.from_dict({"smooth_bias": 1})
    for bad in (0, -2.0, True):
        with pytest.raises(DataError, match="smooth_scale"):
            NetworkConfig.from_dict({"smooth_scale": bad})


@pytest.mark.parametrize("part", ["transition_steps", "prefix_bias", "smooth_bias", "visit_bias"])
def test_each_output_bias_refuses_a_schema_without_channels(part):
    doc = copy.deepcopy(small_schema(1).raw)
    doc["channels"], doc["measurement_groups"] = [], []
    vocab = build_vocabulary(parse_schema(doc))
    off = {"transition_steps": 0, "prefix_bias": False, "smooth_bias": False, "visit_bias": False}
    on = 2 if part == "transition_steps" else True
    config = dataclasses.replace(TINY_NET, **{**off, part: on})
    with pytest.raises(DataError, match=f"{part} needs a schema with at least one channel"):
        build_network(vocab, config)
    build_network(vocab, dataclasses.replace(TINY_NET, **off))  # without them it builds
