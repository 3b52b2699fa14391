"""Attribute disclosure: what the synthetic data tell about a known person's sensitive attribute.

Threat model: the attacker knows a few *quasi-identifiers* of a person (age band, sex, race,
ethnicity, state or ZIP3: whatever the dataset schema has; the kind of facts found in public
records) and wants a *sensitive* one (the set of diagnoses, one diagnosis, or the band of a lab
value). The attacker looks the person up in the synthetic data: the synthetic records whose
quasi-identifiers match best (all of them when some match exactly, else the fewest mismatches)
vote, and the majority value is the guess (Stadler, Oprisanu and Troncoso 2022, "Synthetic data -
anonymisation groundhog day", attribute inference; Giomi et al. 2022, "A unified framework for
quantifying privacy risk in synthetic data", inference risk).

Synthetic data that describe the population well let the attacker guess right for *any* person
of that population; that is the utility of the data, not a leak. So the same attack is run on
holdout patients the generator never saw (the control), and the risk is the difference:

    risk = success on training patients - success on holdout patients

with Newcombe's interval (:func:`medsynth.audit.stats.difference_estimate`). A risk near 0
means the synthetic data tell no more about the people in the training set than about anyone
else; a copy of the training data gives a large risk. Every category, band and bin comes from
the public schema. The result holds counts and rates only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medsynth.audit.base import AuditInputs, AuditResult, Evaluator, not_run
from medsynth.audit.features import (
    cohort_problems,
    does_not_apply,
    patient_features,
    same_records,
    sample_rows,
)
from medsynth.audit.stats import difference_estimate, proportion_estimate
from medsynth.cohort import PATIENT_ID, Cohort
from medsynth.errors import DataError
from medsynth.schema import DatasetSchema
from medsynth.schema.model import Attribute

__all__ = [
    "DEFAULT_QUASI_IDENTIFIERS",
    "AttributeDisclosure",
    "Secret",
    "infer_by_quasi_identifiers",
    "quasi_identifier_codes",
    "resolve_secret",
]

DEFAULT_QUASI_IDENTIFIERS = (
    "age",
    "sex",
    "gender",
    "race",
    "ethnicity",
    "state",
    "zip3",
    "zip",
    "postal_code",
    "county",
)
MIN_TARGETS = 10
NUMERIC_BINS = 10
CHUNK = 256


# -- quasi-identifiers --------------------------------------------------------------------------
def _attribute_levels(attr: Attribute, column: pd.Series, band: float) -> np.ndarray:
    """Public integer levels of one attribute (missing is its own level)."""
    if attr.type == "categorical":
        codes = pd.Categorical(column.astype("object"), categories=list(attr.values)).codes
        return np.where(codes < 0, len(attr.values), codes).astype(np.int64)
    if attr.type == "boolean":
        b = column.astype("boolean")
        return np.where(b.isna(), 2, b.fillna(False).to_numpy(dtype=bool)).astype(np.int64)
    if attr.type == "date":
        lo_d, hi_d = (pd.Timestamp(d) for d in attr.date_bounds())
        raw = ((pd.to_datetime(column) - lo_d).dt.total_seconds() / 86400.0).to_numpy(
            dtype="float64", na_value=np.nan
        )
        lo, hi, width = 0.0, (hi_d - lo_d).total_seconds() / 86400.0, None
    else:
        raw = column.to_numpy(dtype="float64", na_value=np.nan)
        lo, hi = float(attr.min), float(attr.max)  # type: ignore[arg-type]
        width = band if (attr.name == "age" or attr.unit == "a") else None
    if width is None:
        width = (hi - lo) / NUMERIC_BINS if hi > lo else 1.0
    n_levels = max(1, int(math.ceil((hi - lo) / width - 1e-9)) or 1)
    idx = np.clip(np.floor((raw - lo) / width), 0, n_levels - 1)
    return np.where(np.isfinite(raw), idx, n_levels).astype(np.int64)


def quasi_identifier_codes(cohort: Cohort, names: Sequence[str], band: float) -> np.ndarray:
    """``(n_patients, len(names))`` integer levels of the quasi-identifiers."""
    by_name = cohort.schema.attribute_by_name
    cols = [_attribute_levels(by_name[n], cohort.patients[n], band) for n in names]
    return np.stack(cols, axis=1) if cols else np.zeros((cohort.n_patients, 0), np.int64)


# -- the secret ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Secret:
    """The sensitive attribute the attacker infers.

    Attributes:
        kind: ``"diagnoses"`` (the set of schema conditions a patient has), ``"condition"``,
            ``"channel"`` (band of a per-patient channel statistic) or ``"attribute"``.
        name: condition code, channel or attribute name (empty for diagnoses).
        statistic: for a channel, ``"last"`` or ``"mean"``.
    """

    kind: str
    name: str = ""
    statistic: str = "last"

    def describe(self) -> str:
        if self.kind == "diagnoses":
            return "the set of schema diagnoses a patient has"
        if self.kind == "condition":
            return f"whether the patient has condition {self.name}"
        if self.kind == "channel":
            return (
                f"band (below / within / above the normal range) of the {self.statistic} "
                f"{self.name}"
            )
        return f"attribute {self.name}"


def _one_secret(spec: Any, schema: DatasetSchema) -> Secret:
    if spec == "diagnoses":
        if not schema.conditions:
            raise DataError("secret 'diagnoses': the dataset schema lists no conditions")
        return Secret("diagnoses")
    if not isinstance(spec, Mapping) or len({"condition", "channel", "attribute"} & set(spec)) != 1:
        raise DataError(
            f"secret {spec!r} is not one of 'diagnoses', {{'condition': CODE}}, "
            "{'channel': NAME, 'statistic': 'last' | 'mean'}, {'attribute': NAME}"
        )
    if "condition" in spec:
        code = str(spec["condition"])
        if code not in schema.condition_codes:
            raise DataError(f"secret condition {code!r} is not in schema {schema.name!r}")
        return Secret("condition", code)
    if "channel" in spec:
        name, stat = str(spec["channel"]), str(spec.get("statistic", "last"))
        if name not in schema.channel_names:
            raise DataError(f"secret channel {name!r} is not in schema {schema.name!r}")
        if stat not in ("last", "mean"):
            raise DataError(f"secret channel statistic {stat!r} must be 'last' or 'mean'")
        return Secret("channel", name, stat)
    name = str(spec["attribute"])
    if name not in schema.attribute_names:
        raise DataError(f"secret attribute {name!r} is not in schema {schema.name!r}")
    return Secret("attribute", name)


def resolve_secret(spec: Any, schema: DatasetSchema) -> Secret | None:
    """The secret a spec names; a list gives the first the schema supports (None if none).

    ``None`` means the default: the set of diagnoses, else the band of the first channel's last
    value.

    Raises:
        DataError: a single spec the schema does not support, or a malformed one.
    """
    if spec is None:
        if schema.conditions:
            return Secret("diagnoses")
        return Secret("channel", schema.channels[0].name) if schema.channels else None
    if isinstance(spec, list):
        for item in spec:
            try:
                return _one_secret(item, schema)
            except DataError:
                continue
        return None
    return _one_secret(spec, schema)


def _condition_flags(cohort: Cohort) -> np.ndarray:
    codes = list(cohort.schema.condition_codes)
    rows = pd.Index(cohort.patients[PATIENT_ID].astype("object")).get_indexer(
        cohort.conditions[PATIENT_ID].astype("object")
    )
    cols = pd.Index(codes, dtype="object").get_indexer(cohort.conditions["code"].astype("object"))
    keep = (rows >= 0) & (cols >= 0)
    flags = np.zeros((cohort.n_patients, len(codes)), dtype=np.int8)
    flags[rows[keep], cols[keep]] = 1
    return flags


def _channel_band(cohort: Cohort, name: str, statistic: str) -> np.ndarray:
    ch = cohort.schema.channel_by_name[name]
    ev = cohort.events[cohort.events["channel"] == name].sort_values([PATIENT_ID, "time"])
    grouped = ev.groupby(PATIENT_ID)["value"]
    stat = grouped.last() if statistic == "last" else grouped.mean()
    values = stat.reindex(cohort.patients[PATIENT_ID]).to_numpy(dtype="float64")
    if ch.normal is not None:
        edges = np.array([ch.normal[0], ch.normal[1]], dtype="float64")
        band = (values >= edges[0]).astype(int) + (values > edges[1]).astype(int)
    else:
        band = np.clip(np.floor((values - ch.min) / ((ch.max - ch.min) / 3)), 0, 2)
    return np.where(np.isfinite(values), band, 3).astype(np.int64)


def secret_values(cohorts: Sequence[Cohort], secret: Secret) -> list[np.ndarray]:
    """Integer codes of the secret for each cohort, on one shared coding."""
    if secret.kind == "diagnoses":
        keys = [np.array([r.tobytes() for r in _condition_flags(c)], dtype=object) for c in cohorts]
        _, inverse = np.unique(np.concatenate(keys), return_inverse=True)
        cuts = np.cumsum([len(k) for k in keys])[:-1]
        return [a.astype(np.int64) for a in np.split(inverse, cuts)]
    if secret.kind == "condition":
        j = list(cohorts[0].schema.condition_codes).index(secret.name)
        return [_condition_flags(c)[:, j].astype(np.int64) for c in cohorts]
    if secret.kind == "channel":
        return [_channel_band(c, secret.name, secret.statistic) for c in cohorts]
    attr = cohorts[0].schema.attribute_by_name[secret.name]
    return [_attribute_levels(attr, c.patients[secret.name], NUMERIC_BINS) for c in cohorts]


# -- the attack ---------------------------------------------------------------------------------
def infer_by_quasi_identifiers(
    targets: np.ndarray, synthetic: np.ndarray, synthetic_secret: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The attacker's guess for each target and whether an exact quasi-identifier match existed.

    The synthetic records with the fewest quasi-identifier mismatches vote; the most frequent
    secret wins (ties: the smallest code, a fixed rule applied to members and control alike).
    """
    from scipy import sparse

    guesses = np.zeros(len(targets), dtype=np.int64)
    exact = np.zeros(len(targets), dtype=bool)
    if len(synthetic_secret) == 0 or len(targets) == 0:
        return guesses, exact
    # Work on distinct quasi-identifier tuples: synthetic records of one tuple vote together.
    syn_u, syn_inv = np.unique(synthetic, axis=0, return_inverse=True)
    tgt_u, tgt_inv = np.unique(targets, axis=0, return_inverse=True)
    counts = sparse.csr_matrix(
        (np.ones(len(synthetic_secret)), (syn_inv.reshape(-1), synthetic_secret)),
        shape=(len(syn_u), int(synthetic_secret.max()) + 1),
    )  # (distinct synthetic tuples, secret levels): how many records of each value
    guess_u = np.zeros(len(tgt_u), dtype=np.int64)
    exact_u = np.zeros(len(tgt_u), dtype=bool)
    for start in range(0, len(tgt_u), CHUNK):
        block = tgt_u[start : start + CHUNK]
        mism = np.zeros((len(block), len(syn_u)), dtype=np.int16)
        for j in range(syn_u.shape[1]):
            mism += block[:, j, None] != syn_u[None, :, j]
        best = mism.min(axis=1)
        voters = (mism == best[:, None]).astype(np.float64)
        votes = np.asarray((counts.T @ voters.T).T)  # (targets, levels) vote counts
        guess_u[start : start + len(block)] = votes.argmax(axis=1)  # first max: smallest code
        exact_u[start : start + len(block)] = best == 0
    inverse = tgt_inv.reshape(-1)
    guesses[:] = guess_u[inverse]
    exact[:] = exact_u[inverse]
    return guesses, exact


class AttributeDisclosure(Evaluator):
    """Inference of a sensitive attribute from quasi-identifiers through the synthetic data,
    training patients against holdout patients (the risk is the difference of the success rates).

    Args:
        inputs: the audit inputs.
        quasi_identifiers: attribute names the attacker knows; default: those of
            ``age, sex, gender, race, ethnicity, state, zip3, zip, postal_code, county`` the
            schema has (numeric ones in public bands).
        secret: ``"diagnoses"`` (default), ``{"condition": CODE}``,
            ``{"channel": NAME, "statistic": "last"}`` (band against the normal range),
            ``{"attribute": NAME}``, or a list of these (the first the schema has is used).
        age_band_years: width of the age bands the attacker knows.
        max_targets: at most this many training and this many holdout patients are attacked.
        confidence: nominal coverage of the intervals.

    Example:
        >>> AttributeDisclosure(inputs).evaluate().result().metrics["risk"]  # doctest: +SKIP
    """

    name = "attribute_disclosure"
    kind = "privacy"

    def __init__(
        self,
        inputs: AuditInputs,
        *,
        quasi_identifiers: Sequence[str] | None = None,
        secret: Any = None,
        age_band_years: float = 10.0,
        max_targets: int | None = 5000,
        confidence: float = 0.95,
    ) -> None:
        super().__init__(inputs)
        self.quasi_identifiers = quasi_identifiers
        self.secret = secret
        self.age_band_years = age_band_years
        self.max_targets = max_targets
        self.confidence = confidence

    def _quasi_identifiers(self, secret: Secret) -> list[str]:
        schema = self.inputs.schema
        if self.quasi_identifiers is not None:
            unknown = [q for q in self.quasi_identifiers if q not in schema.attribute_names]
            if unknown:
                raise DataError(
                    f"attribute_disclosure parameter 'quasi_identifiers': {unknown} not in "
                    f"schema {schema.name!r}; attributes: {', '.join(schema.attribute_names)}"
                )
            names = list(self.quasi_identifiers)
        else:
            names = [n for n in DEFAULT_QUASI_IDENTIFIERS if n in schema.attribute_names]
            if not names:
                names = [a.name for a in schema.attributes if a.type == "categorical"]
        return [n for n in names if not (secret.kind == "attribute" and n == secret.name)]

    def _run(self) -> AuditResult:
        inp = self.inputs
        params: dict[str, Any] = {
            "seed": inp.random_state,
            "max_targets": self.max_targets,
            "age_band_years": self.age_band_years,
            "confidence": self.confidence,
        }
        secret = resolve_secret(self.secret, inp.schema)
        if secret is None:
            return does_not_apply(
                self.name,
                self.kind,
                f"dataset schema {inp.schema.name!r} has none of the secrets asked for "
                "(diagnoses, a condition, a channel or an attribute)",
                params,
            )
        qis = self._quasi_identifiers(secret)
        params.update(quasi_identifiers=qis, secret=secret.describe())
        if not qis:
            return does_not_apply(
                self.name,
                self.kind,
                f"dataset schema {inp.schema.name!r} has no patient attribute an attacker "
                "could know (no quasi-identifier such as age, sex or place)",
                params,
            )
        reason = cohort_problems(
            {
                "train": inp.train.n_patients,
                "holdout": inp.holdout.n_patients,
                "synthetic": inp.synthetic.n_patients,
            },
            {"train": MIN_TARGETS, "holdout": MIN_TARGETS, "synthetic": 1},
        )
        if reason is None and same_records(
            patient_features(inp.synthetic), patient_features(inp.holdout)
        ):
            reason = "the synthetic cohort holds exactly the holdout patients; no control left"
        if reason:
            return not_run(self.name, self.kind, reason, params)
        rng = np.random.default_rng(inp.random_state)
        rows_t = sample_rows(inp.train.n_patients, self.max_targets, rng)
        rows_h = sample_rows(inp.holdout.n_patients, self.max_targets, rng)
        band = float(self.age_band_years)
        q_syn, q_tr, q_ho = (
            quasi_identifier_codes(c, qis, band) for c in (inp.synthetic, inp.train, inp.holdout)
        )
        s_syn, s_tr, s_ho = secret_values([inp.synthetic, inp.train, inp.holdout], secret)
        g_tr, x_tr = infer_by_quasi_identifiers(q_tr[rows_t], q_syn, s_syn)
        g_ho, x_ho = infer_by_quasi_identifiers(q_ho[rows_h], q_syn, s_syn)
        k_tr, k_ho = int((g_tr == s_tr[rows_t]).sum()), int((g_ho == s_ho[rows_h]).sum())
        n_tr, n_ho = len(rows_t), len(rows_h)
        success_tr = proportion_estimate(k_tr, n_tr, self.confidence)
        success_ho = proportion_estimate(k_ho, n_ho, self.confidence)
        risk = difference_estimate(k_tr, n_tr, k_ho, n_ho, self.confidence)
        majority = int(np.argmax(np.bincount(s_syn)))
        normalized = (
            (success_tr.value - success_ho.value) / (1 - success_ho.value)
            if success_ho.value < 1
            else math.nan
        )
        return AuditResult(
            name=self.name,
            kind=self.kind,
            status="ok",
            metrics={
                "risk": risk,
                "success_train": success_tr,
                "success_control": success_ho,
                "normalized_risk": normalized,
                "targets_train": n_tr,
                "targets_control": n_ho,
            },
            baseline={"risk": 0.0, "success_train": success_ho.value},
            parameters=params,
            details={
                "exact_match_share": {"train": float(x_tr.mean()), "control": float(x_ho.mean())},
                "majority_guess_success": {
                    "train": float((s_tr[rows_t] == majority).mean()),
                    "control": float((s_ho[rows_h] == majority).mean()),
                },
                "secret_levels": int(len(np.unique(np.concatenate([s_syn, s_tr, s_ho])))),
            },
        )
