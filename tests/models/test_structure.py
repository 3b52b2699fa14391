"""Structure a generated timeline cannot get wrong, whatever the model learned: one value of a
channel per visit (unless the schema allows repeats), visits at least a day apart (unless it
allows same-day visits), the first visit at time zero under the first-event anchor, and every
inclusion condition present."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from medsynth.audit.visits import structure_counts
from medsynth.encoding.vocabulary import EOS, GAP, build_vocabulary
from medsynth.errors import SchemaError
from medsynth.models.artifact import load_model
from medsynth.models.network import NetworkConfig
from medsynth.models.plan import TrainConfig
from medsynth.pipeline.train import train
from medsynth.schema import parse_schema
from tests.helpers import make_cohort, minimal_doc

NET = NetworkConfig(d_model=32, n_layers=1, n_heads=4, d_ff=64)
HYPERTENSION = "38341003"


def _schema(*, repeat=False, same_day=False, inclusion=False, max_conditions=2):
    doc = copy.deepcopy(minimal_doc())
    doc["limits"] = {
        "max_events_per_channel": 4,
        "max_events_total": 8,
        "max_conditions": max_conditions,
    }
    if repeat:
        doc["channels"][0]["repeat_within_visit"] = True
    if same_day:
        doc["time"]["same_day_visits"] = True
    if inclusion:
        doc["conditions"]["codes"][0]["inclusion"] = True
    return parse_schema(doc)


def test_the_grammar_follows_the_schema() -> None:
    for repeat, same_day in ((False, False), (True, False), (False, True)):
        vocab = build_vocabulary(_schema(repeat=repeat, same_day=same_day))
        follow, channel = vocab.follow_mask, vocab.token_channel
        glucose, hba1c = np.flatnonzero(channel == 0), np.flatnonzero(channel == 1)
        gaps = np.flatnonzero(vocab.token_kind == GAP)
        assert follow[np.ix_(glucose, glucose)].all() == repeat
        assert not follow[np.ix_(glucose, glucose)].any() or repeat
        assert not follow[np.ix_(hba1c, hba1c)].any()  # only the declared channel repeats
        assert follow[np.ix_(glucose, hba1c)].all() and follow[glucose][:, EOS].all()
        assert follow[glucose][:, gaps[0]].all() == same_day
        assert follow[np.ix_(glucose, gaps[1:])].all()
        # first_event anchor: the first visit opens at time zero, whatever the flags
        prefix_token = vocab.slots[0].first + 1
        assert follow[prefix_token, gaps[0]] and not follow[prefix_token, gaps[1:]].any()


def test_inclusion_conditions_are_checked_against_max_conditions() -> None:
    with pytest.raises(SchemaError, match="inclusion conditions"):
        _schema(inclusion=True, max_conditions=0)
    vocab = build_vocabulary(_schema(inclusion=True))
    number = next(i for i, s in enumerate(vocab.slots, 1) if s.kind == "condition")
    slot = vocab.slots[number - 1]
    assert not vocab.slot_masks[number, slot.first]  # "absent"
    assert vocab.slot_masks[number, slot.first + 1 : slot.first + slot.size].all()


def _messy_cohort(schema, n: int = 80):
    """Training data that breaks every rule: same-visit repeats, same-day visits, a first
    visit after time zero, and the diagnosis in only half the patients."""
    rng = np.random.default_rng(0)
    rows = [(f"p{i}", "female" if i % 2 else "male", 30 + i % 50) for i in range(n)]
    events = []
    for i in range(n):
        pid = f"p{i}"
        events += [(pid, 0.0, "glucose", 100.0 + i % 7), (pid, 0.0, "glucose", 104.0)]
        events += [(pid, 0.4, "hba1c", 5.0 + rng.random()), (pid, 30.0, "glucose", 99.0)]
    conditions = [(f"p{i}", HYPERTENSION) for i in range(0, n, 2)]
    return make_cohort(schema, rows, events, conditions)


@pytest.mark.parametrize("declared", [False, True])
def test_generated_timelines_keep_the_structure(tmp_path, declared) -> None:
    """Trained without noise on data full of same-visit repeats, every synthetic timeline
    still holds none unless the schema allows them (which shows the model did learn them)."""
    schema = _schema(repeat=declared, same_day=declared, inclusion=not declared)
    config = TrainConfig(network=NET, epochs=60, pretrain_patients=0, learning_rate=0.02)
    path = train(
        _messy_cohort(schema),
        epsilon=None,
        non_private=True,
        out=tmp_path / "m",
        config=config,
        progress=False,
    )
    (syn,) = load_model(path).sample(300, random_state=0, batch_size=300)
    counts = structure_counts(syn)
    ev = syn.events
    days = np.floor(ev["time"].to_numpy() + 1e-9)
    per_day = ev.assign(day=days).groupby("patient_id")["day"]
    if declared:
        assert counts["repeat_cells"] > 0  # learned from the data, and allowed
    else:
        assert counts["repeat_cells"] == 0
        # visits at least a day apart: distinct times of a patient fall on distinct days
        times = ev.groupby("patient_id")["time"].nunique()
        assert (per_day.nunique() == times).all()
        has = set(syn.conditions.loc[syn.conditions["code"] == HYPERTENSION, "patient_id"])
        assert has == set(syn.patients["patient_id"])
    assert (per_day.min() == 0).all()  # the first visit at time zero (first_event anchor)


def test_a_later_diagnosis_is_dated_at_a_visit_inside_its_bin_when_there_is_one() -> None:
    from medsynth.encoding.decode import _at_visits

    edges = np.array([0.0, 300.0, 700.0, 1000.0])
    visits = [np.array([0.0, 100.0, 400.0]), np.array([0.0])]
    drawn = np.array([350.0, 800.0, 250.0, 0.0])  # uniform draws inside each bin
    later = np.array([True, True, True, False])
    rows = np.array([0, 0, 1, 1])
    bins = np.array([1, 2, 0, 0])
    out = _at_visits(drawn, later, rows, bins, edges, np.zeros(2), visits, np.random.default_rng(0))
    # bin [300, 700) holds the visit at 400; [700, 1000) holds none; patient 1's bin
    # [0, 300) holds its visit at 0; an onset at the start is left alone
    assert out.tolist() == [400.0, 800.0, 0.0, 0.0]
    shifted = _at_visits(
        drawn[:1],
        later[:1],
        rows[:1],
        bins[:1],
        edges,
        np.array([-150.0, 0.0]),
        visits,
        np.random.default_rng(0),
    )
    assert shifted.tolist() == [400.0]  # the bin moves with the timeline: [150, 550)
