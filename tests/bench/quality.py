"""Marginal fidelity of synthetic patients against the real cohort, in one table.

Usage: ``python tests/bench/quality.py REAL_COHORT SYNTHETIC`` where each is a cohort folder
or a tables folder (``medsynth generate --format csv|parquet``) of the same schema. Prints,
as Markdown, the total variation distance (TVD) of every categorical attribute, of 10-year age
bands and of the number of conditions per patient; the mean absolute difference of condition
prevalences and of channel presence (share of patients with at least one value); the
standardised mean difference of each channel's per-patient mean value; and the correlation of
age with the patient's mean systolic blood pressure in both cohorts.
Reads real data: for the data owner's eyes, like an audit report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from medsynth.cohort import Cohort


def load_any(path: str, schema=None) -> Cohort:
    folder = Path(path)
    if (folder / "cohort.json").exists():
        return Cohort.load(folder)
    from medsynth.tabular import read_tables

    return read_tables(folder, schema)[0]


def tvd(a: pd.Series, b: pd.Series) -> float:
    pa = a.astype(str).value_counts(normalize=True)
    pb = b.astype(str).value_counts(normalize=True)
    keys = pa.index.union(pb.index)
    return 0.5 * float(
        (pa.reindex(keys, fill_value=0) - pb.reindex(keys, fill_value=0)).abs().sum()
    )


def age_sbp_corr(c: Cohort) -> float:
    ev = c.events
    sbp = ev[ev["channel"] == "systolic_bp"].groupby("patient_id")["value"].mean()
    age = c.patients.set_index("patient_id")["age"].astype(float)
    return float(age.loc[sbp.index].corr(sbp))


def compare(real: Cohort, syn: Cohort) -> list[tuple[str, float]]:
    rows: list[tuple[str, float]] = []
    for attr in real.schema.attributes:
        if attr.type in ("categorical", "boolean"):
            rows.append(
                (f"TVD {attr.name}", tvd(real.patients[attr.name], syn.patients[attr.name]))
            )
    bands = [18, 30, 40, 50, 60, 70, 80, 91]
    rows.append(
        (
            "TVD age (10-year bands)",
            tvd(
                pd.Series(np.digitize(real.patients["age"].astype(float), bands)),
                pd.Series(np.digitize(syn.patients["age"].astype(float), bands)),
            ),
        )
    )

    def n_cond(c: Cohort) -> pd.Series:
        counts = c.conditions.groupby("patient_id").size()
        return counts.reindex(c.patient_ids, fill_value=0).clip(upper=4)

    rows.append(("TVD conditions per patient (0..4+)", tvd(n_cond(real), n_cond(syn))))
    codes = real.schema.condition_codes

    def prevalence(c: Cohort) -> np.ndarray:
        have = c.conditions.groupby("code")["patient_id"].nunique()
        return have.reindex(codes, fill_value=0).to_numpy() / c.n_patients

    rows.append(
        (
            "mean abs prevalence diff over conditions",
            float(np.abs(prevalence(real) - prevalence(syn)).mean()),
        )
    )
    channels = [ch.name for ch in real.schema.channels]

    def presence(c: Cohort) -> np.ndarray:
        have = c.events.groupby("channel")["patient_id"].nunique()
        return have.reindex(channels, fill_value=0).to_numpy() / c.n_patients

    rows.append(
        (
            "mean abs presence diff over channels",
            float(np.abs(presence(real) - presence(syn)).mean()),
        )
    )
    smd = []
    for ch in channels:
        r = real.events.loc[real.events["channel"] == ch].groupby("patient_id")["value"].mean()
        s = syn.events.loc[syn.events["channel"] == ch].groupby("patient_id")["value"].mean()
        if len(r) > 1 and len(s) > 1 and r.std() > 0:
            smd.append(abs(r.mean() - s.mean()) / r.std())
    rows.append(("mean abs standardised mean diff over channels", float(np.mean(smd))))
    rows.append(("events per patient, real", len(real.events) / real.n_patients))
    rows.append(("events per patient, synthetic", len(syn.events) / syn.n_patients))
    rows.append(("corr(age, mean systolic BP), real", age_sbp_corr(real)))
    rows.append(("corr(age, mean systolic BP), synthetic", age_sbp_corr(syn)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("real")
    parser.add_argument("synthetic")
    args = parser.parse_args()
    real = load_any(args.real)
    syn = load_any(args.synthetic, real.schema)
    print(
        f"real {real.n_patients} patients ({args.real}), "
        f"synthetic {syn.n_patients} ({args.synthetic})"
    )
    print("| figure | value |")
    print("|---|---|")
    for name, value in compare(real, syn):
        print(f"| {name} | {value:.3f} |")


if __name__ == "__main__":
    main()
