"""The report's words for people: what each risk means, one sentence per verdict.

Plain-language texts of the audit page (kept apart from the layout in :mod:`medsynth.report.html`
so that they can be read and reviewed as prose): what each kind of figure and each evaluator
measures, the summary line per kind of check, and the verdict banner with every check that
failed or did not run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medsynth.audit.policy import not_run_meaning

PLAIN_WORDS = {
    "privacy": "An attacker holding the synthetic data tries to learn something about the real "
    "patients it was trained on. The figure that matters is how much better the attack "
    "does on training patients than on holdout patients the model never saw: that "
    "difference is what the synthetic data leaks; the rest anyone could infer.",
    "fidelity": "How closely the synthetic patients resemble the real ones, statistically. "
    "Lower distances are better; the baseline column shows the distance between two "
    "honest samples of the real population (training vs holdout), the best a "
    "generator can be expected to reach.",
    "utility": "Whether the synthetic data is useful for building models: a classifier trained "
    "on synthetic patients is tested on real holdout patients, beside the same "
    "classifier trained on real patients (the ceiling).",
}
PLAIN_BY_NAME = {
    "mia_dcr": "Membership inference: can someone holding the synthetic data tell whether a given "
    "person was among the training patients, by how close that person's record lies to "
    "a synthetic one? An AUC of 0.5 means no better than a coin toss; 1.0 means every "
    "member is recognised.",
    "mia_density": "Membership inference: a classifier learns where the synthetic data is denser "
    "than real data of people the model never saw, and flags people in those "
    "places as likely training patients. AUC 0.5 means it cannot tell.",
    "mia_likelihood": "Membership inference with the model itself: training patients tend to get "
    "a lower loss than others. AUC 0.5 means the model treats members and "
    "non-members alike.",
    "attribute_disclosure": "Attribute disclosure: an attacker who knows a few facts about a "
    "person (age band, sex, place, race) looks them up in the synthetic "
    "data to guess something sensitive, such as a diagnosis. The risk is "
    "how much better this works for training patients than for people "
    "the model never saw.",
    "singling_out": 'Singling out: rules read off the synthetic data ("the only woman over 80 '
    'in this state with a stroke") that pick out exactly one real training '
    "patient, compared with how often they do so among other people.",
    "linkability": "Linkability: joining two partial descriptions of the same patient (say, "
    "demographics from one source and lab values from another) by way of the "
    "synthetic data.",
    "record_matches": "Copies: synthetic records that are exact or near-exact copies of a real "
    "training record.",
    "dcr_share": "Distance to closest record: whether synthetic patients sit closer to training "
    "patients than real patients the model never saw do. Closer means copying.",
    "subgroups": "Whether every sex, age band and race/ethnicity group is represented and "
    "rendered as faithfully as the whole cohort. Differential privacy tends to blur "
    "small groups first; a flagged group means analyses about it should not rely "
    "on this synthetic data.",
    "timeseries": "Whether the synthetic timelines behave like real ones: how many measurements a "
    "patient has, how far apart, how stable a patient's values are from one "
    "measurement to the next, and where values trend over time.",
}


SUMMARY = {
    ("privacy", "PASS"): "No attack succeeded beyond what the policy allows: in these tests the "
    "synthetic data did not measurably reveal who was among the training "
    "patients or facts about them.",
    ("privacy", "FAIL"): "At least one attack succeeded beyond the policy's limit: the synthetic "
    "data reveals something about specific training patients. Do not "
    "share it.",
    ("fidelity", "PASS"): "The synthetic patients are statistically close to the real ones on "
    "every figure the policy checks.",
    ("fidelity", "FAIL"): "Some distributions, timelines or groups differ more than the policy "
    "allows: analyses that rely on them may mislead.",
    ("utility", "PASS"): "Models trained on the synthetic data work on real patients nearly as "
    "well as models trained on real data.",
    ("utility", "FAIL"): "Models trained on the synthetic data work noticeably worse on real "
    "patients than models trained on real data.",
}
KIND_TITLES = {"privacy": "Privacy", "fidelity": "Fidelity", "utility": "Usefulness"}


def plain_summary(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One plain sentence per kind of check (privacy, fidelity, utility) with its verdict."""
    rows = []
    for kind, title in KIND_TITLES.items():
        checks = [c for c in document["checks"] if c["kind"] == kind]
        ran = [c for c in checks if c["verdict"] != "NOT RUN"]
        if not ran:
            reasons = sorted({c["reason"] for c in checks})
            text = (
                f"NOT assessed: none of the {len(checks)} {kind} checks could run"
                if checks
                else f"NOT assessed: this policy has no {kind} check"
            )
            if kind == "privacy":
                text += (
                    ". This report is no evidence that the synthetic data protects the "
                    "patients; do not share the data on its strength"
                )
            text += "." + (" Why: " + " / ".join(reasons[:3]) if reasons else "")
            rows.append({"title": title, "verdict": "NOT RUN", "text": text})
            continue
        verdict = "FAIL" if any(c["verdict"] == "FAIL" for c in checks) else "PASS"
        failed = [c["name"] for c in checks if c["verdict"] == "FAIL"]
        text = SUMMARY[(kind, verdict)]
        if failed:
            text += " Failed: " + "; ".join(failed) + "."
        skipped = len(checks) - len(ran)
        if skipped:
            text += f" {skipped} check{'s' if skipped != 1 else ''} could not run."
        rows.append({"title": title, "verdict": verdict, "text": text})
    return rows


VERDICT_WORDS = {
    "PASS": "Every check that ran passed.",
    "FAIL": "At least one check failed: read the failed checks before using the data.",
    "INCOMPLETE": "Privacy was not assessed: no privacy check ran. This is not a pass.",
}


def banner(document: Mapping[str, Any]) -> dict[str, Any]:
    """The verdict banner: its colour class, its sentence and every check that did not run."""
    verdict = document["verdict"]
    skipped = [c for c in document["checks"] if c["verdict"] == "NOT RUN"]
    failed = [c for c in document["checks"] if c["verdict"] == "FAIL"]
    css = verdict
    if verdict == "PASS" and skipped:
        css = "PASSPARTIAL"
    return {
        "css": css,
        "verdict": verdict,
        "words": VERDICT_WORDS.get(verdict, ""),
        "headline": document.get("headline", ""),
        "skipped": skipped,
        "failed": failed,
        "meaning": not_run_meaning(
            [(c["evaluator"], c["kind"], c.get("applies", True)) for c in skipped]
        )
        if skipped
        else "",
    }
