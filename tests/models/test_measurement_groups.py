"""Measurement groups through encoding, grammar, sampling and training: whole groups only."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from medsynth.cohort import Cohort
from medsynth.encoding.decode import SampledPatients, decode_patients
from medsynth.encoding.encode import encode_cohort
from medsynth.encoding.vocabulary import EOS, GAP, VALUE, build_vocabulary
from medsynth.models.artifact import build_network, load_model
from medsynth.pipeline.generate import generate_cohort
from medsynth.pipeline.train import train
from medsynth.schema import load_schema, parse_schema
from medsynth.simulate import simulate
from tests.helpers import new_ledger
from tests.models.conftest import TINY_NET, as_sampled, fast_config, sample_unconditioned

GROUP = ("glucose", "hba1c")


def grouped_schema(max_per_channel: int = 3, max_total: int = 7):
    """systolic_bp, then glucose and HbA1c measured together (a two-channel group)."""
    doc = copy.deepcopy(load_schema("general-adult").raw)
    doc["name"] = "grouped-test"
    doc["attributes"] = [a for a in doc["attributes"] if a["name"] in ("sex", "age")]
    doc["conditions"]["codes"] = [c for c in doc["conditions"]["codes"] if c["code"] == "44054006"]
    doc["channels"] = [
        c for c in doc["channels"] if c["name"] in ("systolic_bp", "glucose", "hba1c")
    ]
    assert [c["name"] for c in doc["channels"]] == ["systolic_bp", *GROUP]
    doc["panels"] = []
    doc["limits"] = {
        "max_events_per_channel": max_per_channel,
        "max_events_total": max_total,
        "max_conditions": 1,
    }
    doc["measurement_groups"] = [{"name": "sugar", "channels": list(GROUP)}]
    return parse_schema(doc)


@pytest.fixture(scope="module")
def schema():
    return grouped_schema()


@pytest.fixture(scope="module")
def cohort(schema):
    return simulate(schema, 120, random_state=2)


def assert_whole_groups(cohort: Cohort) -> None:
    """Every visit holds both group channels, once each, or neither; limits hold."""
    ev = cohort.events
    limits = cohort.schema.limits
    grouped = ev[ev["channel"].isin(GROUP)]
    per_visit = grouped.groupby(["patient_id", "time"])["channel"].agg(tuple)
    assert set(per_visit) <= {GROUP}, per_visit.value_counts()
    assert ev.groupby(["patient_id", "channel"]).size().max() <= limits.max_events_per_channel
    assert ev.groupby("patient_id").size().max() <= limits.max_events_total
    again, report = Cohort.conform(cohort.schema, cohort.patients, ev, cohort.conditions)
    assert report.total() == 0, report.lines()


def assert_raw_whole_groups(vocab, sampled: SampledPatients) -> pd.Series:
    """The sampler's own output (before decoding, which would drop a broken group) holds
    whole groups; returns the channel tuple of every visit."""
    frame = pd.DataFrame(
        {"row": sampled.event_row, "time": sampled.event_time, "c": sampled.event_channel}
    )
    visits = frame.groupby(["row", "time"], sort=False)["c"].agg(tuple)
    group = tuple(vocab.schema.channel_names.index(name) for name in GROUP)
    for channels in visits:
        inside = tuple(c for c in channels if c in group)
        assert inside in ((), group), channels
    limits = vocab.schema.limits
    assert frame.groupby(["row", "c"]).size().max() <= limits.max_events_per_channel
    assert frame.groupby("row").size().max() <= limits.max_events_total
    return visits


def test_follow_mask_enforces_groups(schema):
    vocab = build_vocabulary(schema)
    follow, channel, kind = vocab.follow_mask, vocab.token_channel, vocab.token_kind
    sbp, glucose, hba1c = (np.flatnonzero(channel == c) for c in range(3))
    gaps = np.flatnonzero(kind == GAP)
    # After the group's first channel only its next channel: no gap, no EOS, no repeat.
    assert set(np.flatnonzero(follow[glucose[0]])) == set(hba1c)
    assert not follow[glucose][:, EOS].any() and not follow[np.ix_(glucose, gaps)].any()
    # The group is entered at its first channel only (from a gap or an earlier channel).
    assert follow[np.ix_(gaps, glucose)].all() and not follow[np.ix_(gaps, hba1c)].any()
    assert follow[np.ix_(sbp, glucose)].all() and not follow[np.ix_(sbp, hba1c)].any()
    # After the group's last channel: a gap or EOS (no channel comes later, none repeats).
    # The next visit is at least a day later: not the first gap bin ([0, 1) days).
    assert follow[hba1c][:, EOS].all() and follow[np.ix_(hba1c, gaps[1:])].all()
    assert not follow[hba1c][:, gaps[0]].any()
    assert not follow[np.ix_(hba1c, np.flatnonzero(kind == VALUE))].any()
    # An ungrouped channel: later channels, gap, EOS; itself again only with
    # repeat_within_visit (the schema does not set it).
    assert not follow[np.ix_(sbp, sbp)].any() and follow[sbp][:, EOS].all()
    assert follow[np.ix_(sbp, glucose)].all()


def test_vocabulary_identity_includes_groups(schema):
    plain = copy.deepcopy(schema.raw)
    plain.pop("measurement_groups")
    without = build_vocabulary(parse_schema(plain))
    vocab = build_vocabulary(schema)
    assert vocab.to_dict()["measurement_groups"] == [list(GROUP)]
    assert "measurement_groups" not in without.to_dict()
    assert vocab.tokens == without.tokens and vocab.sha256 != without.sha256
    # Without groups the grammar is the plain schema-order one.
    assert without.channel_entry.all() and (without.channel_group == -1).all()


def test_encode_decode_round_trip_with_groups(schema, cohort):
    assert_whole_groups(cohort)
    vocab = build_vocabulary(schema)
    enc = encode_cohort(vocab, cohort)
    for seq, length in zip(enc.tokens, enc.lengths, strict=True):
        seq = seq[:length]
        assert all(vocab.follow_mask[a, b] for a, b in zip(seq[:-1], seq[1:], strict=True))
    decoded = decode_patients(
        vocab, as_sampled(vocab, enc), cohort.patient_ids, np.random.default_rng(0)
    )
    again = encode_cohort(vocab, decoded)
    kinds = vocab.token_kind[enc.tokens]
    np.testing.assert_array_equal(again.tokens[kinds != GAP], enc.tokens[kinds != GAP])
    assert_whole_groups(decoded)


@pytest.mark.parametrize(("max_per_channel", "max_total"), [(3, 7), (2, 4), (1, 2), (4, 3)])
def test_untrained_sampler_keeps_groups_whole_under_tight_limits(max_per_channel, max_total):
    """A random network tries every path the masks leave open; none ends inside a group."""
    schema = grouped_schema(max_per_channel, max_total)
    vocab = build_vocabulary(schema)
    torch.manual_seed(0)
    net = build_network(vocab, TINY_NET)
    n = 300
    sampled = sample_unconditioned(net, vocab, n, seed=1)
    visits = assert_raw_whole_groups(vocab, sampled)
    assert (visits == (1, 2)).sum() > 0  # the group does get sampled
    if max_total >= 3:
        assert (visits == (0, 1, 2)).sum() > 0  # and after an ungrouped channel
    ids = [f"s{i:04d}" for i in range(n)]
    assert_whole_groups(decode_patients(vocab, sampled, ids, np.random.default_rng(2)))


def test_tiny_trained_model_samples_whole_groups(schema, cohort, tmp_path):
    path = train(
        cohort,
        epsilon=200.0,
        delta=1e-5,
        out=tmp_path / "model",
        ledger=new_ledger(tmp_path / "ledger.jsonl"),
        config=fast_config(epochs=2, batch_size=60),
        progress=False,
        random_state=0,
    )
    model = load_model(path, device="cpu")
    visits = assert_raw_whole_groups(
        model.vocab, sample_unconditioned(model.net, model.vocab, 200, seed=3)
    )
    assert (visits.map(len) > 0).all() and visits.map(lambda v: 1 in v).any()
    assert_whole_groups(generate_cohort(model, 200, random_state=0, device="cpu"))
