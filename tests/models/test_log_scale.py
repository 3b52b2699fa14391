"""Log-scaled channels: right-skewed values on a wide public range keep their shape."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from medsynth.encoding.bins import sample_in_bins, value_edges
from medsynth.encoding.vocabulary import EncodingConfig, build_vocabulary, channel_is_log
from medsynth.errors import SchemaError
from medsynth.schema import parse_schema
from tests.helpers import minimal_doc


def _schema(**glucose):
    doc = copy.deepcopy(minimal_doc())
    doc["channels"][0].update(glucose)
    return parse_schema(doc)


def test_default_scale_comes_from_the_bounds_alone() -> None:
    config = EncodingConfig()
    wide = _schema(min=10, max=15000)  # three orders of magnitude
    narrow = _schema(min=20, max=600)  # 30x
    assert channel_is_log(wide.channels[0], config)
    assert not channel_is_log(narrow.channels[0], config)
    assert not channel_is_log(_schema(min=0, max=15000).channels[0], config)
    assert channel_is_log(_schema(scale="log").channels[0], config)  # declared wins
    assert not channel_is_log(_schema(min=10, max=15000, scale="linear").channels[0], config)
    with pytest.raises(SchemaError, match="needs min > 0"):
        _schema(min=0, scale="log")


def test_encodings_stored_before_the_field_keep_their_bins() -> None:
    stored = {k: v for k, v in EncodingConfig().to_dict().items() if k != "log_scale_ratio"}
    old = EncodingConfig.from_dict(stored)
    assert old.log_scale_ratio == 0.0
    schema = _schema(min=10, max=15000, normal=[44, 147], decimals=0)
    before = build_vocabulary(schema, old).value_edges["glucose"]
    linear = value_edges(10, 15000, normal=(44, 147), decimals=0)
    np.testing.assert_array_equal(before, linear)
    now = build_vocabulary(schema).value_edges["glucose"]
    assert not np.array_equal(now, before)


def test_log_bins_keep_relative_resolution_and_values_their_shape() -> None:
    edges = value_edges(10, 15000, normal=(44, 147), decimals=None, log=True)
    ratios = edges[1:] / edges[:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)
    assert len(edges) - 1 == 14 + 3 + 7
    # a value near 1,000 sits in a bin about a third wide, not in [744, 1635) as on the
    # linear grid around the normal range
    k = int(np.searchsorted(edges, 1000.0, side="right") - 1)
    assert edges[k + 1] / edges[k] < 1.4
    linear = value_edges(10, 15000, normal=(44, 147), decimals=None)
    j = int(np.searchsorted(linear, 1000.0, side="right") - 1)
    assert linear[j + 1] / linear[j] > 2.0
    rng = np.random.default_rng(0)
    bins = np.full(20_000, 3)
    drawn = sample_in_bins(bins, np.array([1.0, 10.0, 100.0, 1000.0, 10000.0]), 0, rng, log=True)
    assert drawn.min() >= 1000 and drawn.max() <= 10000 and np.all(drawn == np.round(drawn))
    # log-uniform: about half the draws below the geometric mean of the bin's edges
    assert abs(float(np.mean(drawn < np.sqrt(1000 * 10000))) - 0.5) < 0.02
    flat = sample_in_bins(bins, np.array([1.0, 10.0, 100.0, 1000.0, 10000.0]), 0, rng)
    assert float(np.mean(flat < np.sqrt(1000 * 10000))) < 0.3


@pytest.mark.parametrize("decimals", [1, None])
def test_a_point_mass_gets_a_bin_of_its_own_and_is_generated_exactly(decimals) -> None:
    """A cycle-threshold assay reports "not detected" as 45 (the schema's bound is 50)."""
    edges = value_edges(5, 50, normal=(10, 40), decimals=decimals, point_masses=(45.0, 50.0, 5.0))
    rng = np.random.default_rng(0)
    for v in (45.0, 50.0, 5.0):
        k = int(np.searchsorted(edges, v, side="right") - 1)
        k = min(k, len(edges) - 2)
        drawn = sample_in_bins(np.full(300, k), edges, decimals, rng)
        assert set(drawn.tolist()) == {v}, (v, edges[k : k + 2])
    # neighbours stay in other bins
    near = np.searchsorted(edges, [44.9, 45.1, 49.9], side="right") - 1
    at = np.searchsorted(edges, [45.0, 50.0], side="right") - 1
    assert not set(near.tolist()) & {int(at[0]), min(int(at[1]), len(edges) - 2)}


def test_point_masses_are_checked_and_reach_the_vocabulary() -> None:
    with pytest.raises(SchemaError, match="outside the channel's bounds"):
        _schema(point_masses=[700])
    with pytest.raises(SchemaError, match="more decimals"):
        _schema(point_masses=[45.5])  # glucose has decimals 0
    plain = build_vocabulary(_schema()).value_edges["glucose"]
    marked = build_vocabulary(_schema(point_masses=[45])).value_edges["glucose"]
    assert 45 in marked and 46 in marked and len(marked) > len(plain)
    assert (
        build_vocabulary(_schema()).sha256 == build_vocabulary(parse_schema(minimal_doc())).sha256
    )
