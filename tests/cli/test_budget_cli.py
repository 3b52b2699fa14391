"""``medsynth budget``: cap, show, verify; exit code 3 for refused budgets and damaged ledgers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from medsynth.cli.budget import budget, dataset_fingerprint
from medsynth.errors import BudgetError, DataError
from medsynth.privacy.ledger import Ledger
from tests.helpers import privacy_record

FP = "0123456789abcdef" * 4


def record(epsilon: float):
    """A PRV-accounted release (sigma 1.5) charging ``epsilon``."""
    return privacy_record(epsilon, 1e-6, accountant="prv", noise_multiplier=1.5)


def run(*args: str):
    return CliRunner().invoke(budget, list(args))


@pytest.fixture()
def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "books" / "ledger.jsonl"
    started = run("init", "--ledger", str(path), "--default-cap", "8")
    assert started.exit_code == 0 and "default cap epsilon 8" in started.output, started.output
    return path


def test_init_starts_a_ledger_once_and_nothing_opens_one_implicitly(tmp_path):
    path = tmp_path / "typo.jsonl"
    for args in (["show"], ["verify"], ["cap", FP, "--epsilon", "1"]):
        result = run(*args, "--ledger", str(path))
        assert result.exit_code == 3 and "budget init" in result.output, (args, result.output)
        assert not path.exists()
    bad = run("init", "--ledger", str(path), "--default-cap", "-1")
    assert bad.exit_code == 1 and "default cap must be a finite number > 0" in bad.output
    assert not path.exists()
    assert run("init", "--ledger", str(path)).exit_code == 0
    again = run("init", "--ledger", str(path))
    assert again.exit_code == 1 and "never started over" in again.output


def test_cap_show_verify(ledger):
    result = run("cap", FP, "--epsilon", "2", "--ledger", str(ledger), "--label", "IRB 42")
    assert result.exit_code == 0, result.output
    assert f"cap set for dataset {FP}: epsilon 2" in result.output
    charge = Ledger(ledger).charge(FP, record(0.75), label="first model")
    Ledger(ledger).attach_artifact(charge.id, "e" * 64)

    shown = run("show", "--ledger", str(ledger))
    assert shown.exit_code == 0, shown.output
    assert "cap 2, left 1.25; spent epsilon 0.75" in shown.output
    assert "eeeeeeeeeeeeeeee" in shown.output and "[first model]" in shown.output

    data = json.loads(run("show", FP[:10], "--ledger", str(ledger), "--json").output)
    (item,) = data["datasets"]
    assert (item["dataset"], item["cap"], item["spent_epsilon"], item["remaining"]) == (
        FP,
        2.0,
        0.75,
        1.25,
    )
    assert item["releases"][0]["model_sha256"] == "e" * 64
    assert item["releases"][0]["noise_multiplier"] == 1.5
    assert item["caps"][0]["label"] == "IRB 42"

    checked = run("verify", "--ledger", str(ledger))
    assert checked.exit_code == 0
    assert "intact: 4 events" in checked.output


def test_a_dataset_without_its_own_cap_has_the_default_cap(ledger, tmp_path):
    empty = run("show", "--ledger", str(ledger))
    assert empty.exit_code == 0 and "no caps or releases" in empty.output
    Ledger(ledger).charge(FP, record(1.0), patients=["p1", "p2", "p3"])
    result = run("show", "--ledger", str(ledger))
    assert "default cap 8, left 7" in result.output, result.output
    assert "3 patients recognised as this dataset's" in result.output
    with pytest.raises(BudgetError, match="the ledger's default cap 8"):
        Ledger(ledger).charge(FP, record(7.5))


def test_damaged_ledger_exits_3(ledger):
    run("cap", FP, "--epsilon", "2", "--ledger", str(ledger))
    Ledger(ledger).charge(FP, record(0.5))
    data = ledger.read_bytes()
    ledger.write_bytes(data.replace(b'"epsilon":0.5', b'"epsilon":0.1'))
    for args in (["verify"], ["show"], ["cap", FP, "--epsilon", "3"]):
        result = run(*args, "--ledger", str(ledger))
        assert result.exit_code == 3, (args, result.output)
        assert "does not match its hash" in result.output


def test_budget_error_maps_to_exit_3_through_the_group(ledger):
    """A refused charge raised inside a command becomes exit 3 with its message."""
    import click

    @budget.command("spend-test")
    def spend_test() -> None:
        Ledger(ledger).charge(FP, record(1.5))

    try:
        Ledger(ledger).set_cap(FP, 1.0)
        result = run("spend-test")
        assert result.exit_code == 3
        assert "requested epsilon 1.5, already spent 0 of its cap 1" in result.output
    finally:
        budget.commands.pop("spend-test")
    assert isinstance(budget, click.Group)


def test_dataset_given_as_cohort_folder_or_fhir_files(tmp_path, general_schema):
    from medsynth.fhir.read import read_fhir
    from medsynth.fhir.write import write_fhir
    from medsynth.simulate import simulate

    cohort = simulate(general_schema, 3, random_state=1)
    fhir = tmp_path / "fhir"
    write_fhir(cohort, fhir, format="ndjson", random_state=0)
    ingested = read_fhir([fhir], general_schema).cohort
    assert dataset_fingerprint(str(fhir)) == ingested.source.fingerprint
    folder = tmp_path / "cohort"
    ingested.save(folder)
    assert dataset_fingerprint(str(folder)) == ingested.source.fingerprint
    ledger = Ledger.create(tmp_path / "ledger.jsonl").path
    assert run("cap", str(folder), "--epsilon", "1", "--ledger", str(ledger)).exit_code == 0
    assert Ledger(ledger).cap(ingested.source.fingerprint) == 1.0


def test_unknown_dataset_is_a_usage_error(ledger):
    with pytest.raises(DataError, match="neither"):
        dataset_fingerprint("not-a-path-nor-hex")
    before = ledger.read_bytes()
    result = run("cap", "nope", "--epsilon", "1", "--ledger", str(ledger))
    assert result.exit_code == 1 and "neither" in result.output
    assert ledger.read_bytes() == before


def test_every_command_has_help():
    for name in ("init", "cap", "show", "verify"):
        result = run(name, "--help")
        assert result.exit_code == 0 and "--ledger" in result.output
