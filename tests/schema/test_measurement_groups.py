"""Measurement groups in the dataset schema: parsing, ordering and every problem by path."""

from __future__ import annotations

import pytest

from medsynth.errors import SchemaError
from medsynth.schema import MeasurementGroup, load_schema, parse_schema
from tests.helpers import minimal_doc


def _doc_with(groups, extra_channel: bool = True):
    doc = minimal_doc()
    if extra_channel:
        doc["channels"].append(
            {
                "name": "creatinine",
                "code": "2160-0",
                "display": "Creatinine",
                "unit": "mg/dL",
                "min": 0.1,
                "max": 20,
                "category": "laboratory",
            }
        )
    doc["measurement_groups"] = groups
    return doc


def _problems(doc) -> list[str]:
    with pytest.raises(SchemaError) as info:
        parse_schema(doc)
    return [str(p) for p in info.value.problems]


def test_groups_parse_in_schema_channel_order():
    doc = _doc_with([{"name": "labs", "channels": ["hba1c", "glucose"], "description": "one draw"}])
    schema = parse_schema(doc)
    assert schema.measurement_groups == (
        MeasurementGroup("labs", ("glucose", "hba1c"), "one draw"),
    )
    assert schema.group_of_channel["hba1c"].name == "labs"
    assert "creatinine" not in schema.group_of_channel
    assert parse_schema(minimal_doc()).measurement_groups == ()


def test_a_panel_component_may_be_in_a_group():
    doc = _doc_with([{"name": "labs", "channels": ["glucose", "hba1c"]}])
    doc["panels"] = [
        {
            "name": "sugar",
            "code": "24323-8",
            "display": "Sugar panel",
            "category": "laboratory",
            "components": ["glucose"],
        }
    ]
    assert parse_schema(doc).group_of_channel["glucose"].channels == ("glucose", "hba1c")


def test_structural_group_problems_name_their_path():
    doc = _doc_with(
        [
            {"name": "one", "channels": ["glucose"]},  # fewer than two channels
            {"name": "two", "channels": ["glucose", "hba1c"], "colour": "red"},
        ]
    )
    problems = _problems(doc)
    assert any(p.startswith("$.measurement_groups[0].channels:") for p in problems)
    assert any(p.startswith("$.measurement_groups[1]:") and "colour" in p for p in problems)


def test_semantic_group_problems_are_all_reported_with_paths():
    doc = _doc_with(
        [
            {"name": "labs", "channels": ["glucose", "hba1c"]},
            {"name": "labs", "channels": ["hba1c", "creatinine"]},  # name twice, hba1c twice
            {"name": "other", "channels": ["creatinine", "ferritin"]},  # unknown channel
        ]
    )
    joined = "\n".join(_problems(doc))
    assert "$.measurement_groups: group name 'labs' is used more than once" in joined
    assert "$.measurement_groups[1].channels[0]: channel 'hba1c' is already in" in joined
    assert "$.measurement_groups[2].channels[0]: channel 'creatinine' is already in" in joined
    assert "$.measurement_groups[2].channels[1]: 'ferritin' is not a channel name" in joined
    assert len(joined.splitlines()) == 4


def test_group_must_be_consecutive_and_fit_the_total_limit():
    doc = _doc_with([{"name": "apart", "channels": ["glucose", "creatinine"]}])
    assert _problems(doc) == [
        "$.measurement_groups[0].channels: the group's channels must be consecutive in "
        "$.channels (a visit lists its channels in schema order and a group without "
        "interruption); move them together"
    ]
    doc = _doc_with([{"name": "all", "channels": ["glucose", "hba1c", "creatinine"]}])
    doc["limits"]["max_events_total"] = 2
    doc["limits"]["max_events_per_channel"] = 2
    (problem,) = _problems(doc)
    assert problem.startswith("$.measurement_groups[0].channels: 3 channels exceed")


@pytest.mark.parametrize(
    ("name", "size"),
    [("bench-breast-cancer", 30), ("bench-diabetes", 8), ("bench-flchain", 3), ("bench-mgus2", 3)],
)
def test_bench_schemas_group_their_baseline_channels(name, size):
    from medsynth.schema import schemas_dir

    schema = load_schema(schemas_dir() / f"{name}.json")
    (group,) = schema.measurement_groups
    assert len(group.channels) == size
    assert group.channels == schema.channel_names[:size]
