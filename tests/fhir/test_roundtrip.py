"""FHIR round trips: simulate -> write (bulk ndjson, transaction Bundles) -> read -> same cohort.

The writer invents patient ids, so cohorts are compared patient by patient up to relabelling:
each patient's attributes, events and conditions must come back exactly (values are already
rounded to the schema's decimals, times to whole seconds).
"""

from __future__ import annotations

import pandas as pd
import pytest

from medsynth.cohort import Cohort
from medsynth.fhir.read import read_fhir
from medsynth.fhir.write import write_fhir
from medsynth.simulate import simulate


def _records(cohort: Cohort) -> list[tuple]:
    """Each patient as (attributes, events, conditions), ids left out, in a canonical order."""
    events = {pid: g for pid, g in cohort.events.groupby("patient_id")}
    conditions = {pid: g for pid, g in cohort.conditions.groupby("patient_id")}
    empty_e = cohort.events.iloc[:0]
    empty_c = cohort.conditions.iloc[:0]
    out = []
    for row in cohort.patients.itertuples(index=False):
        pid, *attrs = row
        ev = events.get(pid, empty_e)[["time", "channel", "value"]]
        cond = conditions.get(pid, empty_c)[["code", "onset"]]
        out.append(
            (
                tuple(None if pd.isna(v) else v for v in attrs),
                tuple(ev.itertuples(index=False, name=None)),
                tuple(cond.itertuples(index=False, name=None)),
            )
        )
    return sorted(out, key=repr)


@pytest.mark.parametrize("schema_name", ["general-adult", "liver-panel"])
@pytest.mark.parametrize("layout", ["ndjson", "bundle"])
def test_simulate_write_read_gives_the_same_cohort(schema_name, layout, tmp_path, request):
    schema = request.getfixturevalue(
        "general_schema" if schema_name == "general-adult" else "liver_schema"
    )
    cohort = simulate(schema, 25, random_state=7)
    assert len(cohort.events) > 25 * len(schema.channels) // 4 and len(cohort.conditions) > 0
    write_fhir(cohort, tmp_path / "out", format=layout, random_state=11)
    result = read_fhir([tmp_path / "out"], schema)
    assert result.issues == ()
    assert result.conformance.counts == ()
    assert dict(result.counts.skipped) == {}
    assert set(result.counts.ignored_types) == {"Encounter", "(bulk data manifest)"}
    assert result.counts.ignored_codes == {}
    back = result.cohort
    assert back.n_patients == cohort.n_patients == 25
    assert len(back.events) == len(cohort.events) and len(back.conditions) == len(cohort.conditions)
    assert _records(back) == _records(cohort)
