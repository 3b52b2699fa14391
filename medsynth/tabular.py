"""Cohort tables as CSV or Parquet files, out and back in.

:func:`write_tables` writes a cohort's three tables (``patients``, ``events``, ``conditions``)
plus a ``tables.json`` header that says what the files hold (the dataset schema by name, hash
and in full; row counts; columns and units), atomically: the folder appears complete or not at
all. :func:`read_tables` reads such a folder (or any folder of tables with those names and
columns) back through :meth:`Cohort.conform` and returns the cohort with the conformance
report; bad input raises a :class:`~medsynth.errors.DataError` naming the file, row and column.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from medsynth._io import atomic_dir
from medsynth.cohort import (
    CONDITION_COLUMNS,
    EVENT_COLUMNS,
    PATIENT_ID,
    Cohort,
    ConformanceReport,
    Source,
)
from medsynth.errors import DataError
from medsynth.fhir.read_sources import file_sha256, fingerprint
from medsynth.schema import DatasetSchema, load_schema, parse_schema

__all__ = ["TABLES_FORMAT", "read_tables", "write_tables"]

TABLES_FORMAT = "medsynth.tables/1"
TABLES = ("patients", "events", "conditions")
FORMATS = ("csv", "parquet")
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def write_tables(
    cohort: Cohort,
    out_dir: str | Path,
    *,
    format: Literal["csv", "parquet"] = "csv",  # noqa: A002 - CLI option name
    overwrite: bool = False,
) -> Path:
    """Write the cohort's tables and a ``tables.json`` header into ``out_dir``.

    CSV floats are written in shortest round-trip form, dates as ``YYYY-MM-DD``, booleans as
    ``true``/``false`` and missing values as empty cells.

    Raises:
        DataError: unknown ``format``.
        OutputExistsError: ``out_dir`` exists, is not empty and ``overwrite`` is false.
    """
    if format not in FORMATS:
        raise DataError(f"table format {format!r} is not one of {', '.join(FORMATS)}")
    tables = {
        "patients": _patients_out(cohort, format),
        "events": cohort.events,
        "conditions": cohort.conditions,
    }
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        for name, table in tables.items():
            if format == "csv":
                table.to_csv(tmp / f"{name}.csv", index=False, na_rep="", lineterminator="\n")
            else:
                table.to_parquet(tmp / f"{name}.parquet", index=False)
        header = _header(cohort, format)
        (tmp / "tables.json").write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")
    return Path(out_dir)


def _patients_out(cohort: Cohort, format: str) -> pd.DataFrame:  # noqa: A002
    if format != "csv":
        return cohort.patients
    out = cohort.patients.copy()
    for attr in cohort.schema.attributes:
        col = out[attr.name]
        if attr.type == "date":
            out[attr.name] = col.dt.strftime("%Y-%m-%d").astype("object").where(col.notna(), None)
        elif attr.type == "boolean":
            out[attr.name] = col.astype("object").map(
                lambda v: None if v is None or v is pd.NA else ("true" if v else "false")
            )
    return out


def _header(cohort: Cohort, format: str) -> dict[str, Any]:  # noqa: A002
    schema = cohort.schema
    attributes = {
        a.name: f"{a.type}"
        + (f" ({a.unit})" if a.unit else "")
        + (f": {a.description}" if a.description else "")
        for a in schema.attributes
    }
    units = ", ".join(f"{c.name} [{c.unit}]" for c in schema.channels)
    return {
        "format": TABLES_FORMAT,
        "table_format": format,
        "schema": schema.name,
        "schema_sha256": schema.sha256,
        "dataset_schema": schema.to_dict(),
        "source": cohort.source.to_dict(),
        "tables": {
            "patients": {
                "file": f"patients.{format}",
                "rows": len(cohort.patients),
                "columns": {PATIENT_ID: "patient identifier", **attributes},
            },
            "events": {
                "file": f"events.{format}",
                "rows": len(cohort.events),
                "columns": {
                    PATIENT_ID: "patient identifier",
                    "time": "days since the patient's time zero (schema time anchor)",
                    "channel": "schema channel name",
                    "value": f"value in the channel's UCUM unit: {units}",
                },
            },
            "conditions": {
                "file": f"conditions.{format}",
                "rows": len(cohort.conditions),
                "columns": {
                    PATIENT_ID: "patient identifier",
                    "code": f"condition code in {schema.condition_system}",
                    "onset": "days since time zero (0: present at baseline)",
                },
            },
        },
    }


# -- reading ---------------------------------------------------------------------------------------
def read_tables(
    folder: str | Path, schema: DatasetSchema | None = None, *, strict: bool = False
) -> tuple[Cohort, ConformanceReport]:
    """Read ``patients``, ``events`` and ``conditions`` tables (CSV or Parquet) into a cohort.

    The format is taken from ``tables.json`` when present, else from the files found. Without
    ``schema``, the dataset schema embedded in ``tables.json`` is used. The cohort's source
    fingerprint covers the tables' names and bytes.

    Returns:
        The cohort and the :class:`ConformanceReport` of what :meth:`Cohort.conform` changed
        (values clipped, unknown categories set missing, records truncated...).

    Raises:
        DataError: a table is missing, has unknown or missing columns, or holds a value that is
            not of its column's type (the message names file, row and column); no schema given
            and none in ``tables.json``; in strict mode, a value outside the schema's bounds.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"tables folder {str(root)!r} does not exist")
    header = _read_header(root)
    fmt = _table_format(root, header)
    if schema is None:
        schema = _header_schema(root, header)
    paths = {name: root / f"{name}.{fmt}" for name in TABLES}
    if not paths["patients"].is_file():
        raise DataError(
            f"{root}: no {paths['patients'].name}; expected the tables written by "
            f"`medsynth export --format {fmt}`"
        )
    raw = {name: _load(path, fmt) for name, path in paths.items() if path.is_file()}
    patients = _check_patients(raw["patients"], paths["patients"], schema, fmt)
    events = _check_numeric(
        raw.get("events"), paths["events"], EVENT_COLUMNS, ("time", "value"), fmt
    )
    conditions = _check_numeric(
        raw.get("conditions"), paths["conditions"], CONDITION_COLUMNS, ("onset",), fmt
    )
    digests = [(p.name, file_sha256(p)) for p in paths.values() if p.is_file()]
    source = Source(fingerprint(digests), kind="tables", description=f"{fmt} tables: {root.name}")
    return Cohort.conform(schema, patients, events, conditions, strict=strict, source=source)


def _read_header(root: Path) -> dict[str, Any] | None:
    path = root / "tables.json"
    if not path.is_file():
        return None
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(f"{path}: not a valid tables header: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != TABLES_FORMAT:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise DataError(f"{path}: field 'format' is {found!r}, expected {TABLES_FORMAT!r}")
    return header


def _table_format(root: Path, header: dict[str, Any] | None) -> str:
    if header is not None:
        fmt = header.get("table_format")
        if fmt not in FORMATS:
            raise DataError(
                f"{root / 'tables.json'}: field 'table_format' is {fmt!r}, expected "
                f"one of {', '.join(FORMATS)}"
            )
        return str(fmt)
    found = [f for f in FORMATS if (root / f"patients.{f}").is_file()]
    if not found:
        raise DataError(
            f"{root}: no patients table (patients.csv or patients.parquet); "
            "expected the tables written by `medsynth export`"
        )
    if len(found) > 1:
        raise DataError(
            f"{root}: both patients.csv and patients.parquet; keep one, or add the "
            "tables.json header that names the format"
        )
    return found[0]


def _header_schema(root: Path, header: dict[str, Any] | None) -> DatasetSchema:
    """The dataset schema ``tables.json`` embeds (or names, for a shipped one), hash-checked.

    Raises:
        DataError: no header, or a hash that does not match.
        SchemaError: the embedded schema does not validate.
    """
    path = root / "tables.json"
    if header is None:
        raise DataError(
            f"{root}: no tables.json naming the dataset schema; pass the schema "
            "(--schema NAME or FILE)"
        )
    doc, name = header.get("dataset_schema"), header.get("schema")
    if doc is not None:
        schema = parse_schema(doc, source=f"{path}, field 'dataset_schema'")
    elif isinstance(name, str):
        schema = load_schema(name)
    else:
        raise DataError(
            f"{path}: neither field 'dataset_schema' nor 'schema'; pass the schema "
            "(--schema NAME or FILE)"
        )
    expected = header.get("schema_sha256")
    if expected is not None and expected != schema.sha256:
        raise DataError(
            f"{path}: field 'schema_sha256' is {str(expected)[:12]}..., but schema "
            f"{schema.name!r} hashes to {schema.sha256[:12]}...; the header was "
            "edited, or pass the schema the tables were written with (--schema)"
        )
    return schema


def _load(path: Path, fmt: str) -> pd.DataFrame:
    try:
        if fmt == "parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read table: {exc}") from None


def _where(path: Path, index: int, column: str, fmt: str) -> str:
    row = f"line {index + 2}" if fmt == "csv" else f"row {index + 1}"
    return f"{path}, {row}, column {column!r}"


def _check_columns(
    df: pd.DataFrame, path: Path, required: tuple[str, ...], allowed: tuple[str, ...]
) -> None:
    missing = [c for c in required if c not in df.columns]
    unknown = [c for c in df.columns if c not in allowed]
    if missing or unknown:
        raise DataError(
            f"{path}: missing column(s) {missing}, unknown column(s) {unknown}; "
            f"expected {list(allowed)}"
        )


def _numbers(col: pd.Series, path: Path, name: str, fmt: str) -> pd.Series:
    values = pd.to_numeric(col, errors="coerce").astype("float64")
    bad = values.isna() & col.notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{_where(path, i, name, fmt)}: {col.iloc[i]!r} is not a number "
            f"({int(bad.sum())} such value(s) in the column)"
        )
    return values


def _check_numeric(
    df: pd.DataFrame | None,
    path: Path,
    columns: tuple[str, ...],
    numeric: tuple[str, ...],
    fmt: str,
) -> pd.DataFrame | None:
    if df is None:
        return None
    _check_columns(df, path, columns, columns)
    df = df.loc[:, list(columns)].copy()
    for name in numeric:
        df[name] = _numbers(df[name], path, name, fmt)
    for name in (c for c in columns if c not in numeric):
        _require_text(df[name], path, name, fmt)
    return df


def _require_text(col: pd.Series, path: Path, name: str, fmt: str) -> None:
    empty = col.isna() | (col.astype("str").str.strip() == "")
    if empty.any():
        i = int(np.flatnonzero(empty.to_numpy())[0])
        raise DataError(f"{_where(path, i, name, fmt)}: empty value; every row needs a {name}")


def _check_patients(df: pd.DataFrame, path: Path, schema: DatasetSchema, fmt: str) -> pd.DataFrame:
    _check_columns(df, path, (PATIENT_ID,), (PATIENT_ID, *schema.attribute_names))
    df = df.copy()
    _require_text(df[PATIENT_ID], path, PATIENT_ID, fmt)
    df[PATIENT_ID] = df[PATIENT_ID].astype("str")
    for attr in schema.attributes:
        if attr.name not in df.columns:
            continue
        col = df[attr.name]
        if attr.type == "numeric":
            df[attr.name] = _numbers(col, path, attr.name, fmt)
        elif attr.type == "boolean":
            df[attr.name] = _booleans(col, path, attr.name, fmt)
        elif attr.type == "date":
            dates = pd.to_datetime(col, errors="coerce", format="ISO8601")
            bad = dates.isna() & col.notna()
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(
                    f"{_where(path, i, attr.name, fmt)}: {col.iloc[i]!r} is not a date (YYYY-MM-DD)"
                )
            df[attr.name] = dates
    return df


def _booleans(col: pd.Series, path: Path, name: str, fmt: str) -> pd.Series:
    def parse(v: Any) -> bool | None:
        if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
            return None
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        return _BOOLEANS.get(str(v).strip().lower(), "bad")  # type: ignore[return-value]

    values = col.astype("object").map(parse)
    bad = values.map(lambda v: v == "bad" if isinstance(v, str) else False)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{_where(path, i, name, fmt)}: {col.iloc[i]!r} is not a boolean "
            "(true/false, 1/0, yes/no or empty)"
        )
    return values.astype("boolean")
