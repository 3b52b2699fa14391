"""Properties of the writer's value encoders: each one is undone exactly, up to its rounding.

Decoding uses the standard library (``datetime.fromisoformat``, ``uuid``, ``json``), not
medsynth's reader, so an encoder and a decoder cannot share a mistake.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsynth.errors import MedsynthError
from medsynth.fhir.resources import (
    SECONDS_PER_DAY,
    START_HOUR,
    START_MINUTES,
    birth_date_for_age,
    epoch_seconds,
    fhir_offset,
    local_datetimes,
    offset_seconds,
    quantity_values,
    start_of,
    uuid_strings,
)
from medsynth.schema import DatasetSchema

FHIR_DATETIME = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
    r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
)
WORD = st.integers(min_value=0, max_value=2**64 - 1)
OFFSET_MINUTES = st.integers(min_value=-14 * 60, max_value=14 * 60)
DATES = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31))
EXAMPLES = settings(max_examples=300, deadline=None)


def _zone(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@EXAMPLES
@given(
    start=st.datetimes(min_value=dt.datetime(1950, 1, 1), max_value=dt.datetime(2090, 1, 1)),
    days=st.lists(
        st.floats(min_value=0, max_value=36525, allow_nan=False), min_size=1, max_size=20
    ),
    minutes=OFFSET_MINUTES,
)
def test_day_offsets_to_datetime_and_back(start, days, minutes):
    start = start.replace(microsecond=0)
    zone = fhir_offset(_zone(minutes))
    texts = local_datetimes(epoch_seconds(start) + offset_seconds(np.array(days)), zone)
    for d, text in zip(days, texts, strict=True):
        assert FHIR_DATETIME.fullmatch(text), text
        when = dt.datetime.fromisoformat(text)
        assert when.utcoffset() == dt.timedelta(minutes=minutes)
        seconds = (when.replace(tzinfo=None) - start) / dt.timedelta(seconds=1)
        assert seconds == round(d * SECONDS_PER_DAY)  # whole seconds, half to even
        assert abs(seconds / SECONDS_PER_DAY - d) <= 0.5 / SECONDS_PER_DAY + 1e-9


def test_utc_is_written_z_and_out_of_range_zones_are_refused():
    assert [fhir_offset(z) for z in ("Z", "+00:00", "-00:00", "+14:00", "-09:30")] == [
        "Z",
        "Z",
        "Z",
        "+14:00",
        "-09:30",
    ]
    for bad in ("+14:30", "-15:00", "05:00", "+5:00"):
        with pytest.raises(MedsynthError, match=re.escape(repr(bad))):
            fhir_offset(bad)


@EXAMPLES
@given(
    values=st.lists(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=20
    ),
    decimals=st.integers(min_value=-1, max_value=4),
)
def test_values_to_value_quantity_and_back(values, decimals):
    encoded = quantity_values(np.array(values), np.full(len(values), decimals))
    back = json.loads(
        orjson.dumps([{"value": v, "system": "http://unitsofmeasure.org"} for v in encoded])
    )
    for v, q in zip(values, back, strict=True):
        got = q["value"]
        if decimals == -1:
            assert got == v  # no declared rounding: the exact float comes back
            continue
        assert isinstance(got, int) == (decimals == 0)
        assert math.copysign(1.0, got) == 1.0 or got < 0  # never a negative zero
        assert abs(got - v) <= 0.5 * 10.0**-decimals * (1 + 1e-9) + 1e-9 * abs(v)
        assert got == round(got, decimals)  # at most ``decimals`` decimals


def _age(birth: dt.date, on: dt.date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


@EXAMPLES
@given(start=DATES, age=st.floats(min_value=0, max_value=120), word=WORD)
def test_age_to_birth_date_and_back(start, age, word):
    birth = birth_date_for_age(start, age, word)
    assert _age(birth, start) == math.floor(age)
    assert start - dt.timedelta(days=366 * (math.floor(age) + 1)) <= birth <= start


@given(start=DATES, age=st.integers(min_value=0, max_value=100))
@settings(max_examples=50, deadline=None)
def test_birth_dates_cover_the_whole_year_of_an_age(start, age):
    births = {birth_date_for_age(start, age, w) for w in range(366)}
    window = {b for b in births if _age(b, start) == age}
    assert births == window and len(births) in (365, 366)


@EXAMPLES
@given(words=st.lists(WORD, min_size=2, max_size=40).filter(lambda w: len(w) % 2 == 0))
def test_ids_are_version_4_uuids_of_the_words(words):
    got = uuid_strings(np.array(words, dtype=np.uint64))
    expected = [
        str(uuid.UUID(int=words[i] << 64 | words[i + 1], version=4))
        for i in range(0, len(words), 2)
    ]
    assert got == expected


@EXAMPLES
@given(day_word=WORD, clock_word=WORD)
def test_patient_start_is_in_the_schema_window(general_schema: DatasetSchema, day_word, clock_word):
    t = general_schema.time
    start = start_of(general_schema, day_word, clock_word)
    assert (
        t.output_start <= start.date() <= t.output_start + dt.timedelta(days=t.output_spread_days)
    )
    minutes = start.hour * 60 + start.minute - START_HOUR * 60
    assert 0 <= minutes < START_MINUTES and start.second == 0
