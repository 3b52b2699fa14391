"""``may_be_missing: false``: an attribute every patient has is never generated empty."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from medsynth.cohort import MISSING_REQUIRED, Cohort
from medsynth.encoding.vocabulary import build_vocabulary
from medsynth.errors import DataError
from medsynth.models.artifact import load_model
from medsynth.models.network import NetworkConfig
from medsynth.models.plan import TrainConfig
from medsynth.pipeline.train import train
from medsynth.schema import parse_schema
from tests.helpers import make_cohort, minimal_doc, random_cohort

NET = NetworkConfig(d_model=32, n_layers=1, n_heads=4, d_ff=64)


def _schema(age_may_be_missing: bool | None):
    doc = copy.deepcopy(minimal_doc())
    if age_may_be_missing is not None:
        doc["attributes"][1]["may_be_missing"] = age_may_be_missing
    return parse_schema(doc)


def test_the_field_defaults_to_true_and_keeps_old_schemas_unchanged() -> None:
    old, explicit = _schema(None), _schema(True)
    assert old.attribute_by_name["age"].may_be_missing
    assert explicit.attribute_by_name["age"].may_be_missing
    assert not _schema(False).attribute_by_name["age"].may_be_missing
    # a schema written before the field keeps its hash (models name it)
    assert old.sha256 == parse_schema(minimal_doc()).sha256


def test_grammar_forbids_the_missing_token_only_where_declared() -> None:
    for flag, allowed in ((None, True), (False, False)):
        vocab = build_vocabulary(_schema(flag))
        number = next(i for i, s in enumerate(vocab.slots, 1) if s.name == "age")
        slot = vocab.slots[number - 1]
        assert vocab.tokens[slot.first] == "age=<missing>"
        assert bool(vocab.slot_masks[number, slot.first]) is allowed
        assert vocab.slot_masks[number, slot.first + 1 : slot.first + slot.size].all()


def test_conform_counts_a_missing_value_where_none_may_be() -> None:
    rows = [("a", "female", 40), ("b", "male", None), ("c", "male", 70)]
    cohort = make_cohort(_schema(False), rows)
    _, report = Cohort.conform(_schema(False), cohort.patients)
    assert report.get(MISSING_REQUIRED, "age") == 1
    _, lenient = Cohort.conform(_schema(None), cohort.patients)
    assert lenient.get(MISSING_REQUIRED, "age") == 0
    with pytest.raises(DataError, match="never missing; first: patient 'b'"):
        Cohort.conform(_schema(False), cohort.patients, strict=True)


def _half_missing(schema, n: int = 160) -> Cohort:
    base = random_cohort(schema, n, seed=3)
    patients = base.patients.copy()
    patients.loc[np.arange(n) % 2 == 0, "age"] = np.nan
    return Cohort.conform(schema, patients, base.events, base.conditions)[0]


@pytest.mark.parametrize("flag", [None, False])
def test_generation_never_leaves_a_never_missing_attribute_empty(tmp_path, flag) -> None:
    """Half the training ages are missing. Declared never missing, none of 400 synthetic
    patients lacks one and the loss stays finite; left open, the model reproduces the gaps
    (so the constraint, not chance, is what removes them)."""
    cohort = _half_missing(_schema(flag))
    config = TrainConfig(network=NET, epochs=60, pretrain_patients=0, learning_rate=0.02)
    path = train(
        cohort, epsilon=None, non_private=True, out=tmp_path / "m", config=config, progress=False
    )
    (syn,) = load_model(path).sample(400, random_state=0, batch_size=400)
    share = float(syn.patients["age"].isna().mean())
    if flag is False:
        assert share == 0.0
    else:
        assert share > 0.2
