"""The Cohort: the one in-memory shape that crosses every stage of medsynth.

A cohort is three pandas tables checked against a dataset schema:

* ``patients``: one row per patient, ``patient_id`` plus one column per schema attribute;
* ``events``: long format, ``patient_id, time, channel, value`` (time in days since the
  patient's time zero, value in the channel's UCUM unit);
* ``conditions``: ``patient_id, code, onset`` (schema condition code, onset in days, clipped
  into the horizon: 0 means present at time zero).

:meth:`Cohort.conform` is the only way in: it clips values to the schema's bounds, drops unknown
channels, codes and categories, keeps measurement groups whole, truncates records to the public
per-patient limits, and returns
a :class:`ConformanceReport` counting every change, so nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medsynth._io import atomic_dir
from medsynth.errors import DataError
from medsynth.schema import DatasetSchema, parse_schema
from medsynth.schema.model import Attribute

COHORT_FORMAT = "medsynth.cohort/1"
PATIENT_ID = "patient_id"
EVENT_COLUMNS = ("patient_id", "time", "channel", "value")
CONDITION_COLUMNS = ("patient_id", "code", "onset")
SECONDS_PER_DAY = 86400.0

# What conform() may do to a record, as reported to the caller.
CLIPPED = "clipped to bounds"
UNKNOWN_CATEGORY = "unknown category set to missing"
MISSING_REQUIRED = "missing where the schema says it never is (kept missing)"
UNKNOWN_CHANNEL = "unknown channel dropped"
MISSING_VALUE = "missing or non-finite value dropped"
OUTSIDE_HORIZON = "event outside the time horizon dropped"
ORPHAN = "record of an unknown patient dropped"
CHANNEL_LIMIT = "events beyond the per-channel limit truncated"
TOTAL_LIMIT = "events beyond the per-patient total truncated"
UNKNOWN_CONDITION = "unknown condition code dropped"
DUPLICATE_CONDITION = "repeated condition merged (earliest onset kept)"
CONDITION_LIMIT = "conditions beyond the per-patient limit truncated"
DUPLICATE_PATIENT = "duplicate patient id dropped"
INCOMPLETE_GROUP = "incomplete measurement group dropped"
REPEATED_GROUP_VALUE = "repeated measurement of a grouped channel at one time dropped"


@dataclass(frozen=True)
class ConformanceReport:
    """Counts of every change :meth:`Cohort.conform` made, keyed by (action, field)."""

    counts: tuple[tuple[tuple[str, str], int], ...] = ()

    @classmethod
    def from_counter(cls, counter: Mapping[tuple[str, str], int]) -> ConformanceReport:
        return cls(tuple(sorted((k, int(v)) for k, v in counter.items() if v)))

    def as_counter(self) -> Counter[tuple[str, str]]:
        return Counter(dict(self.counts))

    def total(self, action: str | None = None) -> int:
        return sum(n for (a, _), n in self.counts if action is None or a == action)

    def get(self, action: str, field_name: str) -> int:
        return dict(self.counts).get((action, field_name), 0)

    def merge(self, other: ConformanceReport) -> ConformanceReport:
        return ConformanceReport.from_counter(self.as_counter() + other.as_counter())

    def lines(self) -> list[str]:
        """Human-readable lines, one per (action, field)."""
        return [f"{n:>8}  {action}: {name}" for (action, name), n in self.counts]

    def to_dict(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (action, name), n in self.counts:
            out.setdefault(action, {})[name] = n
        return out


@dataclass(frozen=True)
class Source:
    """Where a cohort came from: its files' fingerprint, and the dataset name its owner gave.

    ``dataset`` names the privacy budget the cohort is charged to (``ingest --dataset``); when
    empty, the fingerprint names it. The ledger also recognises the dataset by its patients
    (:mod:`medsynth.privacy.identity`), whatever name or fingerprint a copy carries.
    """

    fingerprint: str
    kind: str = "frames"
    description: str = ""
    dataset: str = ""

    @property
    def budget_name(self) -> str:
        """The name the privacy ledger charges this cohort to."""
        return self.dataset or self.fingerprint

    def to_dict(self) -> dict[str, str]:
        doc = {"fingerprint": self.fingerprint, "kind": self.kind, "description": self.description}
        if self.dataset:
            doc["dataset"] = self.dataset
        return doc


@dataclass(frozen=True, eq=False)
class Cohort:
    """Patients, events and conditions conformed to a dataset schema.

    Build one with :meth:`conform` (or :meth:`load`); the tables are treated as read-only.
    """

    schema: DatasetSchema
    patients: pd.DataFrame
    events: pd.DataFrame
    conditions: pd.DataFrame
    source: Source = field(default_factory=lambda: Source(fingerprint=""))

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def conform(
        cls,
        schema: DatasetSchema,
        patients: pd.DataFrame,
        events: pd.DataFrame | None = None,
        conditions: pd.DataFrame | None = None,
        *,
        strict: bool = False,
        source: Source | None = None,
    ) -> tuple[Cohort, ConformanceReport]:
        """Check tables against ``schema`` and return the cohort and what was changed.

        Args:
            strict: raise :class:`DataError` on any out-of-bounds value or unknown category
                instead of clipping it or setting it missing.
            source: identity of the source dataset; defaults to the cohort's content hash.
        """
        counter: Counter[tuple[str, str]] = Counter()
        pat = _conform_patients(schema, patients, counter, strict)
        ids = pd.Index(pat[PATIENT_ID])
        ev = _conform_events(schema, _frame(events, EVENT_COLUMNS), ids, counter, strict)
        cond = _conform_conditions(schema, _frame(conditions, CONDITION_COLUMNS), ids, counter)
        cohort = cls(schema, pat, ev, cond, Source(fingerprint=""))
        src = source or Source(fingerprint=cohort.content_hash(), kind="frames")
        return cls(schema, pat, ev, cond, src), ConformanceReport.from_counter(counter)

    # -- basic facts -------------------------------------------------------------------------
    @property
    def n_patients(self) -> int:
        return len(self.patients)

    @property
    def patient_ids(self) -> list[str]:
        return self.patients[PATIENT_ID].tolist()

    def summary(self) -> dict[str, Any]:
        """Sizes of the three tables and events per channel."""
        per_channel = self.events["channel"].value_counts().to_dict()
        return {
            "patients": self.n_patients,
            "events": len(self.events),
            "conditions": len(self.conditions),
            "events_per_channel": {
                c: int(per_channel.get(c, 0)) for c in self.schema.channel_names
            },
        }

    def content_hash(self) -> str:
        """sha256 over the schema and a canonical rendering of the three tables."""
        h = hashlib.sha256(self.schema.sha256.encode())
        for name, table in (
            ("patients", self.patients),
            ("events", self.events),
            ("conditions", self.conditions),
        ):
            h.update(name.encode())
            h.update(table.to_csv(index=False, float_format="%.17g", na_rep="<NA>").encode())
        return h.hexdigest()

    # -- subsets and splits ------------------------------------------------------------------
    def subset(self, patient_ids: Iterable[str]) -> Cohort:
        """The cohort restricted to ``patient_ids`` (order of the original kept)."""
        keep = set(patient_ids)
        pat = self.patients[self.patients[PATIENT_ID].isin(keep)].reset_index(drop=True)
        ev = self.events[self.events[PATIENT_ID].isin(keep)].reset_index(drop=True)
        cond = self.conditions[self.conditions[PATIENT_ID].isin(keep)].reset_index(drop=True)
        return Cohort(self.schema, pat, ev, cond, self.source)

    def split(self, holdout_fraction: float, *, random_state: int) -> tuple[Cohort, Cohort]:
        """Seeded patient-level split into (train, holdout); both keep this cohort's source."""
        if not 0.0 < holdout_fraction < 1.0:
            raise DataError(f"holdout fraction must be between 0 and 1, got {holdout_fraction}")
        ids = np.array(sorted(self.patient_ids))
        rng = np.random.default_rng(random_state)
        n_hold = int(round(holdout_fraction * len(ids)))
        if n_hold == 0 or n_hold == len(ids):
            raise DataError(
                f"a {holdout_fraction} holdout of {len(ids)} patients leaves a side empty"
            )
        hold = set(rng.choice(ids, size=n_hold, replace=False).tolist())
        train = [i for i in self.patient_ids if i not in hold]
        return self.subset(train), self.subset(hold)

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write Parquet tables, the schema and a JSON header; atomic (header written last)."""
        target = Path(path)
        with atomic_dir(target, overwrite=overwrite) as tmp:
            self.patients.to_parquet(tmp / "patients.parquet", index=False)
            self.events.to_parquet(tmp / "events.parquet", index=False)
            self.conditions.to_parquet(tmp / "conditions.parquet", index=False)
            (tmp / "schema.json").write_text(json.dumps(self.schema.raw, indent=2) + "\n")
            header = {
                "format": COHORT_FORMAT,
                "schema": self.schema.name,
                "schema_sha256": self.schema.sha256,
                "source": self.source.to_dict(),
                "content_sha256": self.content_hash(),
                **self.summary(),
            }
            (tmp / "cohort.json").write_text(json.dumps(header, indent=2, sort_keys=True) + "\n")
        return target

    @classmethod
    def load(cls, path: str | Path) -> Cohort:
        """Read a cohort folder written by :meth:`save`, checking its header and content hash."""
        folder = Path(path)
        header_path = folder / "cohort.json"
        if not header_path.is_file():
            raise DataError(f"{folder}: not a medsynth cohort folder (no cohort.json)")
        try:
            header = json.loads(header_path.read_text())
            schema = parse_schema(
                json.loads((folder / "schema.json").read_text()), source=str(folder / "schema.json")
            )
            tables = {
                n: pd.read_parquet(folder / f"{n}.parquet")
                for n in ("patients", "events", "conditions")
            }
        except (OSError, ValueError) as exc:
            raise DataError(f"{folder}: cannot read cohort: {exc}") from None
        if header.get("format") != COHORT_FORMAT:
            raise DataError(
                f"{header_path}: field 'format' is {header.get('format')!r}, "
                f"expected {COHORT_FORMAT!r}"
            )
        try:
            src = header["source"]
            # "dataset" is written only when the owner named the dataset (ingest --dataset).
            source = Source(
                src["fingerprint"], src["kind"], src["description"], src.get("dataset", "")
            )
        except (KeyError, TypeError) as exc:
            raise DataError(f"{header_path}: field 'source' is missing or lacks {exc}") from None
        cohort = cls(schema, tables["patients"], tables["events"], tables["conditions"], source)
        if cohort.content_hash() != header.get("content_sha256"):
            raise DataError(
                f"{folder}: content does not match cohort.json field 'content_sha256'; "
                "the folder was modified after it was written"
            )
        return cohort


# -- conformance helpers ------------------------------------------------------------------------
def _frame(df: pd.DataFrame | None, columns: tuple[str, ...]) -> pd.DataFrame:
    if df is None:
        return pd.DataFrame(
            {
                c: pd.Series(dtype="float64" if c in ("time", "value", "onset") else "str")
                for c in columns
            }
        )
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"table is missing column(s) {missing}; expected {list(columns)}")
    return df.loc[:, list(columns)].copy()


def _text(col: pd.Series, table: str, column: str) -> pd.Series:
    """``col`` as strings; text that UTF-8 (and so Arrow and Parquet) cannot hold is a DataError."""
    try:
        return col.astype("str")
    except UnicodeEncodeError:
        for row, value in enumerate(col):
            try:
                str(value).encode("utf-8")
            except UnicodeEncodeError:
                raise DataError(
                    f"{table} table, row {row}, column {column!r}: {value!r} is not valid "
                    "Unicode text (a lone surrogate); fix the source's text encoding"
                ) from None
        raise


def _check_strict(
    strict: bool, mask: pd.Series, what: str, ids: pd.Series, values: pd.Series
) -> None:
    if strict and mask.any():
        i = int(np.flatnonzero(mask.to_numpy())[0])
        raise DataError(
            f"{int(mask.sum())} {what}; first: patient {ids.iloc[i]!r}, "
            f"value {values.iloc[i]!r} (strict mode; drop --strict to clip instead)"
        )


def _conform_patients(
    schema: DatasetSchema, df: pd.DataFrame, counter: Counter, strict: bool
) -> pd.DataFrame:
    if PATIENT_ID not in df.columns:
        raise DataError(f"patients table has no {PATIENT_ID!r} column")
    df = df.copy()
    df[PATIENT_ID] = _text(df[PATIENT_ID], "patients", PATIENT_ID)
    dup = df[PATIENT_ID].duplicated()
    counter[(DUPLICATE_PATIENT, PATIENT_ID)] += int(dup.sum())
    df = df[~dup].reset_index(drop=True)
    out = pd.DataFrame({PATIENT_ID: df[PATIENT_ID]})
    for attr in schema.attributes:
        col = df[attr.name] if attr.name in df.columns else pd.Series([pd.NA] * len(df))
        out[attr.name] = _conform_attribute(
            attr, col.reset_index(drop=True), df[PATIENT_ID], counter, strict
        )
        if not attr.may_be_missing:
            missing = out[attr.name].isna()
            _check_strict(
                strict,
                missing,
                f"missing values in {attr.name!r}, which the schema says is never missing",
                df[PATIENT_ID],
                col.reset_index(drop=True),
            )
            counter[(MISSING_REQUIRED, attr.name)] += int(missing.sum())
    return out


def _conform_attribute(
    attr: Attribute, col: pd.Series, ids: pd.Series, counter: Counter, strict: bool
) -> pd.Series:
    if attr.type == "categorical":
        values = col.astype("object").where(col.notna(), None)
        mapped = values.map(
            lambda v: (
                None if v is None else (c.value if (c := attr.category_for_code(str(v))) else "\0")
            )
        )
        unknown = mapped == "\0"
        _check_strict(strict, unknown, f"unknown categories in {attr.name!r}", ids, col)
        counter[(UNKNOWN_CATEGORY, attr.name)] += int(unknown.sum())
        return mapped.where(~unknown, None).astype("str").where(mapped.notna() & ~unknown, pd.NA)
    if attr.type == "boolean":
        return col.map(_to_bool).astype("boolean")
    if attr.type == "date":
        lo, hi = (pd.Timestamp(d) for d in attr.date_bounds())
        dates = pd.to_datetime(col, errors="coerce").astype("datetime64[s]")
        outside = (dates < lo) | (dates > hi)
        _check_strict(strict, outside, f"dates outside bounds in {attr.name!r}", ids, col)
        counter[(CLIPPED, attr.name)] += int(outside.sum())
        return dates.clip(lo, hi)
    values = pd.to_numeric(col, errors="coerce").astype("float64")
    values = values.where(np.isfinite(values))
    outside = (values < attr.min) | (values > attr.max)
    _check_strict(
        strict, outside, f"values outside [{attr.min}, {attr.max}] in {attr.name!r}", ids, col
    )
    counter[(CLIPPED, attr.name)] += int(outside.sum())
    values = values.clip(attr.min, attr.max)
    return values.round(attr.decimals) if attr.decimals is not None else values


def _to_bool(v: Any) -> bool | None:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    text = str(v).strip().lower()
    return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text)


def _conform_events(
    schema: DatasetSchema, ev: pd.DataFrame, ids: pd.Index, counter: Counter, strict: bool
) -> pd.DataFrame:
    ev[PATIENT_ID] = _text(ev[PATIENT_ID], "events", PATIENT_ID)
    ev["channel"] = _text(ev["channel"], "events", "channel")
    ev["time"] = pd.to_numeric(ev["time"], errors="coerce").astype("float64")
    ev["value"] = pd.to_numeric(ev["value"], errors="coerce").astype("float64")
    known = ev["channel"].isin(schema.channel_names)
    for name, n in ev.loc[~known, "channel"].value_counts().items():
        counter[(UNKNOWN_CHANNEL, str(name))] += int(n)
    ev = ev[known]
    orphan = ~ev[PATIENT_ID].isin(ids)
    counter[(ORPHAN, "events")] += int(orphan.sum())
    ev = ev[~orphan]
    bad = ~(np.isfinite(ev["value"]) & np.isfinite(ev["time"]))
    for name, n in ev.loc[bad, "channel"].value_counts().items():
        counter[(MISSING_VALUE, str(name))] += int(n)
    ev = ev[~bad]
    ev = ev.assign(time=np.round(ev["time"] * SECONDS_PER_DAY) / SECONDS_PER_DAY)
    outside = (ev["time"] < 0) | (ev["time"] > schema.time.horizon_days)
    for name, n in ev.loc[outside, "channel"].value_counts().items():
        counter[(OUTSIDE_HORIZON, str(name))] += int(n)
    ev = ev[~outside]
    lo = ev["channel"].map({c.name: c.min for c in schema.channels}).astype("float64")
    hi = ev["channel"].map({c.name: c.max for c in schema.channels}).astype("float64")
    out_of_bounds = (ev["value"] < lo) | (ev["value"] > hi)
    _check_strict(
        strict,
        out_of_bounds,
        "event values outside their channel bounds",
        ev[PATIENT_ID],
        ev["value"],
    )
    for name, n in ev.loc[out_of_bounds, "channel"].value_counts().items():
        counter[(CLIPPED, str(name))] += int(n)
    values = ev["value"].clip(lo, hi)
    decimals = {c.name: c.decimals for c in schema.channels if c.decimals is not None}
    for name, d in decimals.items():
        sel = ev["channel"] == name
        values[sel] = values[sel].round(d)
    ev = ev.assign(value=values)
    order = {name: i for i, name in enumerate(schema.channel_names)}
    ev = ev.assign(_ord=ev["channel"].map(order)).sort_values(
        [PATIENT_ID, "time", "_ord", "value"], kind="mergesort"
    )
    ev = _whole_groups(schema, ev, counter)
    rank = ev.groupby([PATIENT_ID, "channel"], sort=False).cumcount()
    over = rank >= schema.limits.max_events_per_channel
    for name, n in ev.loc[over, "channel"].value_counts().items():
        counter[(CHANNEL_LIMIT, str(name))] += int(n)
    ev = ev[~over]
    over_total = ev.groupby(PATIENT_ID, sort=False).cumcount() >= schema.limits.max_events_total
    counter[(TOTAL_LIMIT, "events")] += int(over_total.sum())
    ev = _whole_groups(schema, ev[~over_total], counter)
    ev = ev.drop(columns="_ord").reset_index(drop=True)
    return ev.astype({PATIENT_ID: "str", "channel": "str", "time": "float64", "value": "float64"})


def _whole_groups(schema: DatasetSchema, ev: pd.DataFrame, counter: Counter) -> pd.DataFrame:
    """Events (sorted by patient, time, channel order) with every measurement group whole.

    At each (patient, time) a grouped channel keeps its first value only, and a group that
    misses a channel there loses its other values, so each visit holds whole groups, once.
    Run before the limits (so truncation never sees partial groups) and after them (the total
    limit can cut a visit inside a group). Every dropped value is counted.
    """
    group_of = {
        name: g for g, group in enumerate(schema.measurement_groups) for name in group.channels
    }
    if not group_of or len(ev) == 0:
        return ev
    ev = ev.reset_index(drop=True)
    group = ev["channel"].map(group_of)
    repeated = group.notna() & ev.duplicated([PATIENT_ID, "time", "channel"])
    for name, n in ev.loc[repeated, "channel"].value_counts().items():
        counter[(REPEATED_GROUP_VALUE, str(name))] += int(n)
    keep = group.notna() & ~repeated
    sub, g = ev[keep], group[keep].astype("int64").rename("_g")
    present = sub.groupby([sub[PATIENT_ID], sub["time"], g], sort=False)["channel"].transform(
        "size"
    )
    need = g.map({i: len(grp.channels) for i, grp in enumerate(schema.measurement_groups)})
    incomplete = pd.Series(False, index=ev.index)
    incomplete[sub.index] = (present < need).to_numpy()
    for name, n in ev.loc[incomplete, "channel"].value_counts().items():
        counter[(INCOMPLETE_GROUP, str(name))] += int(n)
    return ev[~repeated & ~incomplete]


def _conform_conditions(
    schema: DatasetSchema, cond: pd.DataFrame, ids: pd.Index, counter: Counter
) -> pd.DataFrame:
    cond[PATIENT_ID] = _text(cond[PATIENT_ID], "conditions", PATIENT_ID)
    canonical = {code: c.code for code, c in schema.condition_by_code.items()}
    mapped = _text(cond["code"], "conditions", "code").map(canonical)
    for code, n in cond.loc[mapped.isna(), "code"].value_counts().items():
        counter[(UNKNOWN_CONDITION, str(code))] += int(n)
    cond = cond.assign(code=mapped)[mapped.notna()]
    orphan = ~cond[PATIENT_ID].isin(ids)
    counter[(ORPHAN, "conditions")] += int(orphan.sum())
    cond = cond[~orphan]
    onset = pd.to_numeric(cond["onset"], errors="coerce").astype("float64").fillna(0.0)
    onset = (np.round(onset * SECONDS_PER_DAY) / SECONDS_PER_DAY).clip(
        0.0, schema.time.horizon_days
    )
    cond = cond.assign(onset=onset).sort_values([PATIENT_ID, "onset", "code"], kind="mergesort")
    dup = cond.duplicated([PATIENT_ID, "code"])
    for code, n in cond.loc[dup, "code"].value_counts().items():
        counter[(DUPLICATE_CONDITION, str(code))] += int(n)
    cond = cond[~dup]
    if schema.limits.max_conditions is not None:
        over = cond.groupby(PATIENT_ID, sort=False).cumcount() >= schema.limits.max_conditions
        counter[(CONDITION_LIMIT, "conditions")] += int(over.sum())
        cond = cond[~over]
    return cond.reset_index(drop=True).astype(
        {PATIENT_ID: "str", "code": "str", "onset": "float64"}
    )
