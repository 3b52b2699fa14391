"""``medsynth budget``: set epsilon caps, show what each dataset has spent, verify the ledger.

A DATASET is named by its path (a cohort folder, a tables folder, or the FHIR files or folder it
was ingested from: the fingerprint is computed the way ingest computes it) or by its 64-hex
fingerprint (``show`` also takes a unique prefix of at least 8 digits). A damaged ledger exits
with code 3, like a refused budget.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from medsynth.cli import MedsynthGroup
from medsynth.cli.options import echo_chain
from medsynth.errors import DataError

_HEX64 = re.compile(r"[0-9a-f]{64}")
_PREFIX = re.compile(r"[0-9a-f]{8,64}")

ledger_option = click.option(
    "--ledger",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Ledger file; default $MEDSYNTH_LEDGER, else $XDG_DATA_HOME/medsynth/ledger.jsonl "
    "(~/.local/share/medsynth/ledger.jsonl).",
)


def dataset_fingerprint(value: str) -> str:
    """The fingerprint a path or fingerprint string names (see the module docstring).

    Raises:
        DataError: neither an existing source nor a 64-hex fingerprint, or a cohort folder
            whose header has no fingerprint.
    """
    path = Path(value)
    if path.exists():
        from medsynth.sources import is_cohort_dir, is_tables_dir

        if is_cohort_dir(path):
            try:
                header = json.loads((path / "cohort.json").read_text(encoding="utf-8"))
                found = header["source"].get("dataset") or header["source"]["fingerprint"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise DataError(f"{path / 'cohort.json'}: no source fingerprint ({exc})") from None
            if not isinstance(found, str) or not found:
                raise DataError(
                    f"{path / 'cohort.json'}: field source.fingerprint is empty; "
                    "re-create the cohort with `medsynth ingest`"
                )
            return found
        if is_tables_dir(path):
            from medsynth.tabular import read_tables

            return read_tables(path)[0].source.fingerprint
        from medsynth.fhir.read_sources import file_sha256, find_inputs, fingerprint

        return fingerprint((f.relative, file_sha256(f.path)) for f in find_inputs([path]))
    if _HEX64.fullmatch(value):
        return value
    raise DataError(
        f"DATASET {value!r} is neither an existing cohort folder, tables folder or FHIR source, "
        "nor a dataset fingerprint (64 hex digits, as `medsynth ingest` prints it)"
    )


_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


@click.group(cls=MedsynthGroup)
def budget() -> None:
    """Privacy budget per source dataset: caps, releases spent, ledger integrity.

    Every DP training run is charged to its source dataset in an append-only, hash-chained
    ledger before it starts; a run that would pass the dataset's cap is refused (exit 3).
    Epsilons and deltas of a dataset's releases add up (basic composition). A ledger is
    started only by `medsynth budget init`; a missing one is refused, never read as empty.
    """


@budget.command()
@ledger_option
@click.option(
    "--default-cap",
    type=float,
    default=None,
    help="Total epsilon of a dataset that has no cap of its own (default 10).",
)
@click.option("--label", default="", help="Free text stored with the ledger (who runs it).")
def init(ledger: Path | None, default_cap: float | None, label: str) -> None:
    """Start a new, empty privacy ledger (and this installation's secret key if none exists).

    The key ($MEDSYNTH_HOME/installation.key, mode 0600) seals the ledger's head so edits by
    anyone without it are detected; back it up with the ledger. A ledger is never started over.
    """
    from medsynth.privacy.installation import key_path
    from medsynth.privacy.ledger import DEFAULT_CAP, Ledger

    cap = DEFAULT_CAP if default_cap is None else default_cap
    book = Ledger.create(ledger, default_cap=cap, label=label)
    click.echo(
        f"ledger started at {book.path} (default cap epsilon {cap:g} per dataset); its head is "
        f"sealed with the installation key {key_path()}: back up both"
    )


@budget.command()
@click.argument("dataset")
@click.option(
    "--epsilon",
    type=float,
    required=True,
    help="Total epsilon the dataset may ever spend (all releases together).",
)
@click.option("--label", default="", help="Free text stored with the cap (who decided, why).")
@ledger_option
def cap(dataset: str, epsilon: float, label: str, ledger: Path | None) -> None:
    """Set (or change) DATASET's total epsilon cap; the latest cap is the one in force."""
    from medsynth.privacy.ledger import Ledger

    book = Ledger(ledger)
    fp = dataset if dataset in book.datasets() else dataset_fingerprint(dataset)
    book.set_cap(fp, epsilon, label=label)
    s = book.summary(fp)
    click.echo(
        f"cap set for dataset {fp}: epsilon {epsilon:g} (spent {s.spent_epsilon:.6g}, "
        f"left {s.remaining:.6g}) in {book.path}"
    )
    if s.spent_epsilon > epsilon:
        click.echo(
            "warning: the dataset has already spent more than this cap; every further "
            "release will be refused",
            err=True,
        )


@budget.command()
@click.argument("dataset", required=False)
@ledger_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def show(dataset: str | None, ledger: Path | None, as_json: bool) -> None:
    """Show caps, spent epsilon and delta, and every release, per dataset (or for DATASET)."""
    from medsynth.privacy.ledger import Ledger

    book = Ledger(ledger)
    events = book.events()
    known = book.datasets()
    chosen = known if dataset is None else [_pick(dataset, known)]
    report = {
        "ledger": str(book.path),
        "composition": "basic",
        "datasets": [_dataset_report(book, fp, events) for fp in chosen],
    }
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    if not chosen:
        click.echo(f"no caps or releases recorded in {book.path}")
        return
    click.echo(f"ledger {book.path} (epsilons and deltas of a dataset add up)")
    for item in report["datasets"]:
        click.echo(_dataset_text(item))


@budget.command()
@ledger_option
@click.option(
    "--model",
    type=_DIR,
    default=None,
    help="A model folder: check that the ledger settles its charge with its model hash and "
    "that its privacy.json states what was charged.",
)
@click.option(
    "--export", type=_DIR, default=None, help="A FHIR export folder: check its manifest's model."
)
@click.option(
    "--report", type=_DIR, default=None, help="An audit report folder: check its model."
)
def verify(
    ledger: Path | None, model: Path | None, export: Path | None, report: Path | None
) -> None:
    """Check the whole ledger: hashes, chain, completeness. Exit 3 if it is damaged.

    With --model, --export or --report, also check that they and the ledger name one model
    hash (exit 5 if they do not).
    """
    from medsynth.privacy.ledger import Ledger

    book = Ledger(ledger)
    n = book.verify()
    click.echo(f"ledger {book.path} is intact: {n} events, hash chain verified")
    if model is None and export is None and report is None:
        return
    from medsynth.pipeline.provenance import check_chain

    echo_chain(check_chain(model=model, ledger=book, export=export, report=report))


def _pick(value: str, known: list[str]) -> str:
    """A dataset from its name, a path, a full fingerprint, or a unique prefix of a known one."""
    if value in known:
        return value
    if not Path(value).exists() and _PREFIX.fullmatch(value) and not _HEX64.fullmatch(value):
        hits = [fp for fp in known if fp.startswith(value)]
        if len(hits) == 1:
            return hits[0]
        raise DataError(
            f"fingerprint prefix {value!r} matches {len(hits)} datasets in the "
            "ledger; give more digits or the full fingerprint"
        )
    return dataset_fingerprint(value)


def _dataset_report(book: Any, fp: str, events: list[Any]) -> dict[str, Any]:
    mine = [e for e in events if e.dataset == fp]
    artifacts = {
        e.payload["charge_id"]: e.payload.get("model_sha256", e.payload.get("artifact_sha256"))
        for e in mine
        if e.type == "artifact"
    }
    releases = [
        {"id": e.id, "time": e.time, **e.payload, "model_sha256": artifacts.get(e.id)}
        for e in mine
        if e.type == "charge"
    ]
    caps = [{"id": e.id, "time": e.time, **e.payload} for e in mine if e.type == "cap"]
    patients = len({k for e in mine if e.type == "dataset" for k in e.payload["keys"]})
    return {
        **book.summary(fp).to_dict(),
        "patients_registered": patients,
        "releases": releases,
        "caps": caps,
    }


def _dataset_text(item: dict[str, Any]) -> str:
    if item["cap_is_default"]:
        limit = (
            f"default cap {item['cap']:.6g}, left {item['remaining']:.6g} (no cap of its own; "
            "set one with `medsynth budget cap`)"
        )
    else:
        limit = f"cap {item['cap']:.6g}, left {item['remaining']:.6g}"
    lines = [
        f"dataset {item['dataset']}",
        f"  {limit}; spent epsilon {item['spent_epsilon']:.6g}, "
        f"delta {item['spent_delta']:.3g} in {item['charges']} release(s); "
        f"{item['patients_registered']} patients recognised as this dataset's",
    ]
    for r in item["releases"]:
        artifact = (r["model_sha256"] or "none (run failed or still running)")[:16]
        lines.append(
            f"  - {r['time'][:19]}Z epsilon {r['epsilon']:.6g} delta {r['delta']:.3g} "
            f"({r['accountant']}; q={r['sample_rate']:.6g}, sigma={r['noise_multiplier']:.6g}, "
            f"steps={r['steps']}) model {artifact}" + (f" [{r['label']}]" if r["label"] else "")
        )
    return "\n".join(lines)
