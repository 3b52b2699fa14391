"""The training rule: defaults from N, epsilon and the schema alone; the non-private mode; the
plan printed by ``medsynth train --plan``; epsilons the noise search cannot reach."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from medsynth.cli import cli
from medsynth.errors import DataError, MedsynthError
from medsynth.models.artifact import load_model
from medsynth.models.plan import (
    DP_EPOCHS,
    NONPRIVATE_MIN_STEPS,
    TrainConfig,
    plan_schedule,
    resolve_config,
    rule_schedule,
)
from medsynth.pipeline.generate import generate_cohort
from medsynth.pipeline.train import plan_run, train
from medsynth.privacy.accounting import EpsilonOutOfReach
from medsynth.simulate import simulate
from tests.helpers import new_ledger
from tests.models.conftest import TINY_NET, small_schema

SIZES = (2, 3, 10, 99, 350, 1_000, 2_047, 4_567, 20_000, 1_000_000)


def _steps(n: int, epsilon: float | None) -> int:
    return plan_schedule(TrainConfig(epochs=rule_schedule(n, epsilon).epochs), n).steps


def test_rule_is_monotone_in_n_and_epsilon() -> None:
    for eps in (0.1, 1.0, 3.0, 8.0, None):
        rates = [1 / rule_schedule(n, eps).steps_per_epoch for n in SIZES]
        assert rates == sorted(rates, reverse=True), (eps, rates)
        if eps is not None:
            steps = [_steps(n, eps) for n in SIZES]
            assert steps == sorted(steps), (eps, steps)
    for n in SIZES:  # without noise: whole epochs of at least the floor of steps
        k = rule_schedule(n, None).steps_per_epoch
        assert NONPRIVATE_MIN_STEPS <= _steps(n, None) < max(NONPRIVATE_MIN_STEPS, 20 * k) + k
    for n in SIZES:
        by_eps = [_steps(n, eps) for eps in (0.1, 1.0, 3.0, 8.0)]
        assert by_eps == sorted(by_eps)
        # no noise: at least as many steps as any private run, and never fewer than the floor
        assert _steps(n, None) >= max(by_eps)
        assert _steps(n, None) >= NONPRIVATE_MIN_STEPS


def test_rule_fills_only_what_is_left_open() -> None:
    schema = small_schema(1)
    chosen = resolve_config(TrainConfig(), n_patients=400, epsilon=3.0, schema=schema)
    assert (chosen.batch_size, chosen.epochs) == (None, DP_EPOCHS)
    assert plan_schedule(chosen, 400).sample_rate == 0.25
    assert chosen.learning_rate and chosen.pretrain_patients == 0  # one-visit schema
    kept = resolve_config(
        TrainConfig(batch_size=7, epochs=3, learning_rate=0.5, pretrain_patients=5),
        n_patients=400,
        epsilon=3.0,
        schema=schema,
    )
    assert (kept.batch_size, kept.epochs, kept.learning_rate, kept.pretrain_patients) == (
        7,
        3,
        0.5,
        5,
    )
    with pytest.raises(MedsynthError, match="learning_rate"):
        TrainConfig(learning_rate=float("nan"))
    with pytest.raises(MedsynthError, match="at least 2 patients"):
        rule_schedule(1, 3.0)


def test_plan_reads_n_and_the_schema_only() -> None:
    """The same N gives the same plan whatever the records: the rule never sees them."""
    schema = small_schema()
    a = plan_run(500, schema, epsilon=2.0, delta=1e-5, config=TrainConfig(accountant="rdp"))
    b = plan_run(500, schema, epsilon=2.0, delta=1e-5, config=TrainConfig(accountant="rdp"))
    assert a == b and a.record is not None and a.record.epsilon <= 2.0
    text = "\n".join(a.lines())
    for needle in ("noise multiplier (sigma)", "sample rate (q)", "steps: ", "delta 1e-05"):
        assert needle in text
    assert plan_run(500, schema, epsilon=None).record is None


def test_epsilon_out_of_reach_names_the_smallest(tmp_path) -> None:
    with pytest.raises(EpsilonOutOfReach) as caught:
        plan_run(40, small_schema(), epsilon=1e-7, delta=1e-5, config=TrainConfig(accountant="rdp"))
    assert caught.value.smallest is not None and caught.value.smallest > 1e-7
    assert f"{caught.value.smallest:.3g}" in str(caught.value)


def test_cli_refuses_unreachable_epsilon_with_one_line_and_charges_nothing(tmp_path) -> None:
    cohort = simulate(small_schema(1), 40, random_state=0)
    src = cohort.save(tmp_path / "cohort")
    ledger = new_ledger(tmp_path / "ledger.jsonl")
    before = ledger.read_bytes()
    result = CliRunner().invoke(
        cli,
        [
            "train",
            str(src),
            "--epsilon",
            "1e-7",
            "--accountant",
            "rdp",
            "--ledger",
            str(ledger),
            "--out",
            str(tmp_path / "m"),
            "--no-progress",
        ],
    )
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "smallest epsilon" in lines[0] and "nothing was charged" in lines[0]
    assert ledger.read_bytes() == before
    assert not (tmp_path / "m").exists()
    for bad in ("0", "-1", "nan", "inf"):
        result = CliRunner().invoke(
            cli,
            [
                "train",
                str(src),
                "--epsilon",
                bad,
                "--ledger",
                str(ledger),
                "--out",
                str(tmp_path / "m"),
                "--no-progress",
            ],
        )
        assert result.exit_code != 0 and "epsilon must be > 0" in result.output, bad
    assert ledger.read_bytes() == before


def test_cli_plan_prints_the_choice_and_the_budget_and_charges_nothing(tmp_path) -> None:
    cohort = simulate(small_schema(1), 60, random_state=0)
    src = cohort.save(tmp_path / "cohort")
    ledger = new_ledger(tmp_path / "ledger.jsonl")
    before = ledger.read_bytes()
    result = CliRunner().invoke(
        cli,
        [
            "train",
            str(src),
            "--epsilon",
            "2",
            "--accountant",
            "rdp",
            "--plan",
            "--ledger",
            str(ledger),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "noise multiplier (sigma)" in result.output
    assert "expected batch 15 patients" in result.output
    assert "left; this run" in result.output and "would fit" in result.output
    assert ledger.read_bytes() == before
    both = CliRunner().invoke(
        cli, ["train", str(src), "--epsilon", "2", "--non-private", "--out", str(tmp_path / "x")]
    )
    assert both.exit_code == 2 and "takes no --epsilon" in both.output
    neither = CliRunner().invoke(cli, ["train", str(src), "--out", str(tmp_path / "x")])
    assert neither.exit_code == 2 and "--epsilon is required" in neither.output
    missing = tmp_path / "no-ledger.jsonl"
    nowhere = CliRunner().invoke(
        cli,
        ["train", str(src), "--epsilon", "2", "--accountant", "rdp", "--plan"]
        + ["--ledger", str(missing), "--no-progress"],
    )
    assert nowhere.exit_code == 0 and f"no ledger at {missing}" in nowhere.output
    assert not missing.exists()  # --plan never starts a ledger


def test_non_private_mode_charges_nothing_and_is_refused_for_release(tmp_path) -> None:
    cohort = simulate(small_schema(1), 30, random_state=0)
    config = TrainConfig(network=TINY_NET, epochs=2, pretrain_patients=0)
    with pytest.raises(MedsynthError, match="takes no epsilon"):
        train(cohort, epsilon=1.0, out=tmp_path / "x", non_private=True, config=config)
    with pytest.raises(MedsynthError, match="epsilon is required"):
        train(cohort, epsilon=None, out=tmp_path / "x", ledger=tmp_path / "l.jsonl")
    path = train(
        cohort, epsilon=None, out=tmp_path / "m", non_private=True, config=config, progress=False
    )
    model = load_model(path)
    assert not model.releasable
    doc = json.loads((path / "privacy.json").read_text())
    assert doc["releasable"] is False and doc["mechanism"] == "none"
    training = json.loads((path / "config.json").read_text())["training"]
    assert training["steps"] == 2 * training["steps_per_epoch"]
    with pytest.raises(DataError, match="not releasable"):
        generate_cohort(path, 5, device="cpu")
    (syn,) = model.sample(5, random_state=1)  # the benchmark samples it directly
    assert syn.n_patients == 5
