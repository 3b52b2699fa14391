"""Encoding: schema-only vocabulary, exact round trips, bins, grammar, conditions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from medsynth.cohort import Cohort
from medsynth.encoding.bins import digitize, equal_edges, gap_edges, sample_in_bins, value_edges
from medsynth.encoding.decode import decode_patients
from medsynth.encoding.encode import encode_cohort
from medsynth.encoding.vocabulary import (
    BOS,
    EOS,
    GAP,
    PAD,
    build_vocabulary,
)
from medsynth.errors import DataError
from medsynth.models.conditions import parse_condition_text, resolve_conditions
from medsynth.simulate import simulate
from tests.models.conftest import as_sampled


@pytest.fixture(scope="module")
def general_cohort(general_schema):
    return simulate(general_schema, 60, random_state=3)


def _neighbour(cohort: Cohort) -> Cohort:
    """The cohort without its first patient and with one extra, extreme patient."""
    keep = cohort.patient_ids[1:]
    sub = cohort.subset(keep)
    extra = pd.DataFrame({"patient_id": ["outlier"], "sex": ["male"], "age": [90.0]})
    events = pd.DataFrame(
        {
            "patient_id": ["outlier"] * 2,
            "time": [0.0, 3.0],
            "channel": ["glucose", "glucose"],
            "value": [599.0, 20.0],
        }
    )
    patients = pd.concat([sub.patients, extra], ignore_index=True)
    return Cohort.conform(cohort.schema, patients, pd.concat([sub.events, events]), sub.conditions)[
        0
    ]


def test_vocabulary_is_byte_identical_for_neighbouring_cohorts(general_cohort):
    other = _neighbour(general_cohort)
    a = build_vocabulary(general_cohort.schema)
    b = build_vocabulary(other.schema)
    assert a.to_bytes() == b.to_bytes()
    assert a.sha256 == b.sha256
    # A patient's encoding does not depend on who else is in the cohort.
    ea, eb = encode_cohort(a, general_cohort), encode_cohort(b, other)
    np.testing.assert_array_equal(ea.tokens[1:], eb.tokens[:-1])
    np.testing.assert_array_equal(ea.times[1:], eb.times[:-1])


def test_vocabulary_layout(general_schema):
    vocab = build_vocabulary(general_schema)
    assert vocab.tokens[:3] == ("<pad>", "<bos>", "<eos>")
    assert vocab.n_prefix == len(general_schema.attributes) + len(general_schema.conditions)
    assert vocab.max_len == 2 + vocab.n_prefix + 2 * general_schema.limits.max_events_total
    sex = vocab.slots[0]
    assert vocab.tokens[sex.first : sex.first + sex.size] == (
        "sex=<missing>",
        "sex=female",
        "sex=male",
    )
    # Every token belongs to exactly one slot (PAD/BOS to none).
    assert vocab.slot_masks.sum(axis=0).tolist() == [0, 0] + [1] * (vocab.size - 2)


def test_value_token_ranks_are_bin_midpoints_inside_each_channel(general_schema):
    vocab = build_vocabulary(general_schema)
    for name, first in vocab.value_first.items():
        n = len(vocab.value_edges[name]) - 1
        np.testing.assert_allclose(vocab.token_rank[first : first + n], (np.arange(n) + 0.5) / n)
    assert (vocab.token_rank[: vocab.value_start] == 0).all()


def test_encoding_obeys_the_grammar(general_cohort):
    vocab = build_vocabulary(general_cohort.schema)
    enc = encode_cohort(vocab, general_cohort)
    for row, length in zip(enc.tokens, enc.lengths, strict=True):
        seq = row[:length]
        assert seq[0] == BOS and seq[-1] == EOS and (row[length:] == PAD).all()
        for a, b in zip(seq[:-1], seq[1:], strict=True):
            assert vocab.follow_mask[a, b], (vocab.tokens[a], vocab.tokens[b])
        slots = vocab.token_slot[seq[1 : 1 + vocab.n_prefix]]
        assert slots.tolist() == list(range(1, vocab.n_prefix + 1))


def test_encode_decode_round_trip_is_exact(general_cohort):
    """Decoding the encoded cohort and encoding it again gives the same tokens."""
    vocab = build_vocabulary(general_cohort.schema)
    enc = encode_cohort(vocab, general_cohort)
    sampled = as_sampled(vocab, enc)
    decoded = decode_patients(vocab, sampled, general_cohort.patient_ids, np.random.default_rng(0))
    again = encode_cohort(vocab, decoded)
    kinds = vocab.token_kind[enc.tokens]
    np.testing.assert_array_equal(again.tokens[kinds != GAP], enc.tokens[kinds != GAP])
    assert decoded.n_patients == general_cohort.n_patients
    assert len(decoded.events) == len(general_cohort.events)


@settings(max_examples=60, deadline=None)
@given(
    lo=st.integers(-1000, 1000).map(lambda k: k / 20),  # schema bounds are decimal numbers
    width=st.integers(5, 5000).map(lambda k: k / 10),
    decimals=st.sampled_from([None, 0, 1, 2]),
    seed=st.integers(0, 2**31),
)
def test_values_drawn_in_a_bin_stay_in_it(lo, width, decimals, seed):
    assume(decimals is None or width >= 10.0 ** (-decimals))  # the domain holds a value
    hi = round(lo + width, 2)
    normal = (lo + 0.3 * width, lo + 0.5 * width)
    edges = value_edges(lo, hi, normal=normal, decimals=decimals)
    assert edges[0] == lo and edges[-1] == hi and (np.diff(edges) > 0).all()
    rng = np.random.default_rng(seed)
    bins = rng.integers(0, len(edges) - 1, 200)
    values = sample_in_bins(bins, edges, decimals, rng)
    assert ((values >= lo) & (values <= hi)).all()
    if decimals is not None:
        # Representable values of a bin snapped to the grid stay in that bin.
        np.testing.assert_array_equal(digitize(values, edges), bins)


def test_bins_are_fixed_functions_of_public_bounds():
    np.testing.assert_array_equal(
        equal_edges(18, 90, 16, 0),
        [18, 22, 27, 32, 36, 40, 45, 50, 54, 58, 63, 68, 72, 76, 81, 86, 90],
    )
    gaps = gap_edges(1826, 20)
    assert gaps[0] == 0 and gaps[1] == 1 and gaps[-1] == 1826 and len(gaps) == 21
    assert digitize(np.array([0.0, 0.99, 1.0, 1826.0, 5000.0]), gaps).tolist() == [0, 0, 1, 19, 19]


def test_conditions_resolve_to_slot_tokens(general_schema):
    vocab = build_vocabulary(general_schema)
    plan = resolve_conditions(
        vocab, {"sex": "female", "age": (40, 60), "diabetes": True, "Hypertension": False}
    )
    assert plan.allowed[1].tolist() == [1]  # sex=female
    age_edges = vocab.attribute_edges["age"]
    kept = age_edges[plan.allowed[2] - 1]
    assert kept.min() <= 40 and kept.max() <= 60 and plan.ranges["age"] == (40.0, 60.0)
    n_attr = len(general_schema.attributes)
    diabetes = 1 + n_attr + general_schema.condition_codes.index("44054006")
    hypertension = 1 + n_attr + general_schema.condition_codes.index("38341003")
    assert 0 not in plan.allowed[diabetes].tolist()
    assert plan.allowed[hypertension].tolist() == [0]


def test_bad_conditions_are_all_reported(general_schema):
    vocab = build_vocabulary(general_schema)
    with pytest.raises(DataError) as err:
        resolve_conditions(vocab, {"sex": "woman", "age": (100, 120), "nosuch": True})
    text = str(err.value)
    assert "'woman' is not a category" in text and "outside the schema bounds" in text
    assert "'nosuch'" in text


def test_condition_text_parsing():
    assert parse_condition_text("sex=female") == ("sex", "female")
    assert parse_condition_text("age=40-60") == ("age", (40.0, 60.0))
    assert parse_condition_text("race=white,asian") == ("race", ["white", "asian"])
    assert parse_condition_text("diabetes=true") == ("diabetes", "true")
    with pytest.raises(DataError):
        parse_condition_text("sex")
