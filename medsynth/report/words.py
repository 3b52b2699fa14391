"""The report's words for people: what each risk means, one sentence per verdict.

Plain-language texts of the audit page (kept apart from the layout in :mod:`medsynth.report.html`
so that they can be read and reviewed as prose): what each kind of figure and each evaluator
measures, the summary line per kind of check, the reason of each check in words ("exact copies
of distinctive training records: 5 (at least 1 with 95 % confidence), allowed at most 0"), and
the verdict banner with every check that failed or did not run.
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
        "headline": document["headline"],
        "skipped": skipped,
        "failed": failed,
        "meaning": not_run_meaning(
            [(c["evaluator"], c["kind"], c.get("applies", True)) for c in skipped],
            privacy_ran=any(
                c["verdict"] != "NOT RUN" and c["kind"] == "privacy" for c in document["checks"]
            ),
        )
        if skipped
        else "",
    }


# -- each check's reason in words -----------------------------------------------------------
FIGURE_WORDS = {
    "auc": "membership AUC (0.5 is a coin toss)",
    "tpr_excess_at_fpr_1pct": "share of training patients recognised beyond chance at 1 % false "
    "alarms",
    "distinctive_copies": "exact copies of distinctive training records",
    "exact_matches": "synthetic records identical to a training record",
    "share": "share of synthetic records closer to a training than to a holdout patient (0.5 "
    "expected)",
    "attribute_tvd_mean": "mean distance (TVD) of the attributes' shares",
    "attribute_tvd_max": "largest distance (TVD) of one attribute's shares",
    "channel_tvd_mean": "mean distance (TVD) of the measurement values",
    "channel_tvd_max": "largest distance (TVD) of one measurement's values",
    "channel_ks_max": "largest KS distance of one measurement's values",
    "condition_prevalence_diff_max": "largest difference in a condition's prevalence",
    "cramers_v_diff_mean": "mean difference of the associations (Cramér's V)",
    "cramers_v_diff_max": "largest difference of an association (Cramér's V)",
    "correlation_diff_mean": "mean difference of the correlations",
    "correlation_diff_max": "largest difference of a correlation",
    "events_per_patient_tvd": "distance (TVD) of the number of events per patient",
    "gap_tvd": "distance (TVD) of the days between visits",
    "gap_ks": "KS distance of the days between visits",
    "channel_share_tvd": "distance (TVD) of each measurement's share of the events",
    "lag1_diff_max": "largest difference of a measurement's visit-to-visit persistence",
    "lag1_diff_mean": "mean difference of the measurements' visit-to-visit persistence",
    "slope_diff_max": "largest difference of a measurement's median trend (share of its range "
    "per year)",
    "slope_ks_max": "largest KS distance of a measurement's trends",
    "auc_gap": "AUC lost by training on synthetic instead of real patients",
    "auc_synthetic": "AUC of a model trained on synthetic patients, on real holdout patients",
    "auc_real": "AUC of a model trained on real patients, on real holdout patients",
    "auc_ratio": "AUC of the synthetic-trained model over the real-trained one",
    "under_represented_groups": "groups under-represented",
    "distorted_groups": "groups distorted",
    "flagged_groups": "groups flagged",
}
FIGURE_WORDS_BY_EVALUATOR = {
    ("attribute_disclosure", "risk"): "success inferring a training patient's secret, beyond "
    "holdout patients",
    ("singling_out", "risk"): "share of predicates that isolate one training patient, beyond "
    "holdout patients",
    ("linkability", "risk"): "success linking two views of a training patient, beyond holdout "
    "patients",
    ("record_matches", "risk"): "share of synthetic records that nearly copy a training record, "
    "beyond holdout records",
}
RULE_WORDS = {
    "<=": "allowed at most",
    "<": "must stay below",
    ">=": "must be at least",
    ">": "must exceed",
}


def figure_words(evaluator: str, metric: str) -> str:
    """What a check's figure measures, in words (the metric's name when none are written)."""
    return FIGURE_WORDS_BY_EVALUATOR.get(
        (evaluator, metric), FIGURE_WORDS.get(metric, metric.replace("_", " "))
    )


def _figure(document: Mapping[str, Any], evaluator: str, metric: str) -> Any:
    for r in document.get("results", []):
        if r["name"] == evaluator:
            return r["metrics"].get(metric)
    return None


def plain_reason(check: Mapping[str, Any], document: Mapping[str, Any]) -> str:
    """A check's reason for people.

    A check that ran reads ``"<what the figure measures>: <value> (at least <bound> with 95 %
    confidence), allowed at most <threshold>"``: the estimate first, then the end of its
    interval the rule reads, if it reads one. A check that did not run keeps its reason, which
    is already in words.
    """
    from medsynth.report.html import fmt

    if check["verdict"] == "NOT RUN" or check.get("value") is None:
        return check["reason"]
    what = figure_words(check["evaluator"], check["metric"])
    rule = f"{RULE_WORDS.get(check['op'], check['op'])} {fmt(float(check['threshold']))}"
    if check.get("minus_baseline"):
        base = "two real samples" if check.get("kind") != "privacy" else "the control"
        return f"{what}, beyond {base}: {fmt(float(check['value']))}, {rule}"
    figure = _figure(document, check["evaluator"], check["metric"])
    statistic = check.get("statistic", "value")
    if statistic == "value" or not isinstance(figure, Mapping):
        return f"{what}: {fmt(float(check['value']))}, {rule}"
    one_sided = 100 * (1 + float(figure.get("confidence", 0.95))) / 2
    bound = "at least" if statistic == "ci_low" else "at most"
    return (
        f"{what}: {fmt(figure.get('value'))} ({bound} {fmt(float(check['value']))} with "
        f"{fmt(one_sided)} % confidence), {rule}"
    )
