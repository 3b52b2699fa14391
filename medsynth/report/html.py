"""The audit report as one self-contained HTML page.

:func:`render_html` turns the report document (the content of ``report.json``) into a page a data
owner and a compliance officer can read: the verdict first, the plain statement that audit
figures are computed on real data and not covered by the DP guarantee, the checks, what each risk
means in plain words, the charts (inline SVG from :mod:`medsynth.report.svg`) and the technical
detail last. The page loads nothing: no scripts, fonts, images or style sheets from elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from medsynth.report import svg

TEMPLATES = Path(__file__).resolve().parent / "templates"

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


# -- formatting ------------------------------------------------------------------------------------
def fmt(value: Any) -> str:
    """A figure for people: estimates with their interval, floats to 4 significant digits."""
    if value is None:
        return "n/a"
    if isinstance(value, Mapping) and "value" in value:
        core = fmt(value["value"])
        if value.get("ci_low") is not None and value.get("ci_high") is not None:
            pct = round(100 * float(value.get("confidence", 0.95)))
            core += f" [{fmt(value['ci_low'])}, {fmt(value['ci_high'])}] ({pct}% CI)"
        return core
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _is_series(v: Any, n: int) -> bool:
    return isinstance(v, list) and len(v) == n and all(isinstance(x, (int, float)) for x in v)


def generic_charts(details: Mapping[str, Any], limit: int = 6) -> list[Markup]:
    """Charts for an attack's details: ROC curves (``fpr``/``tpr``) and histograms (``edges``)."""
    charts: list[Markup] = []

    def visit(node: Any, title: str) -> None:
        if len(charts) >= limit or not isinstance(node, Mapping):
            return
        if _is_series(node.get("fpr"), len(node.get("fpr") or [])) and _is_series(
            node.get("tpr"), len(node.get("fpr") or [])
        ):
            curve = {"attack": (node["fpr"], node["tpr"])}
            charts.append(
                Markup(
                    svg.lines(
                        curve,
                        f"{title}: ROC" if title else "ROC",
                        x_range=(0, 1),
                        y_range=(0, 1),
                        diagonal=True,
                        x_label="false positive rate",
                        y_label="TPR",
                    )
                )
            )
            charts.append(
                Markup(
                    svg.roc_log(
                        curve, f"{title}: low FPR" if title else "ROC at low false positive rates"
                    )
                )
            )
            return
        edges = node.get("edges")
        if isinstance(edges, list) and len(edges) >= 2:
            series = {
                k: v for k, v in node.items() if k != "edges" and _is_series(v, len(edges) - 1)
            }
            if series:
                charts.append(Markup(svg.step_histogram(edges, series, title)))
                return
        for key, child in node.items():
            visit(child, f"{title}: {key}" if title else str(key))

    visit(details, "")
    return charts


# -- per-evaluator views ------------------------------------------------------------------------
def fidelity_view(result: Mapping[str, Any]) -> dict[str, Any]:
    d = result["details"]
    marg = d["marginals"]
    attrs = [
        Markup(
            (svg.hbars if len(e["labels"]) > 14 else svg.bars)(
                e["labels"],
                {"real": e["real"], "synthetic": e["synthetic"]},
                f"{name} (TVD {fmt(e['tvd'])})",
            )
        )
        for name, e in marg["attributes"].items()
    ]
    chans = [
        Markup(
            svg.step_histogram(
                e["edges"],
                {"real": e["real"], "synthetic": e["synthetic"]},
                f"{name} (TVD {fmt(e['tvd'])}, KS {fmt(e['ks'])})",
                x_label=e["unit"],
            )
        )
        for name, e in marg["channels"].items()
        if e["n_real"] or e["n_synthetic"]
    ]
    conds = marg["conditions"]
    cond_chart = Markup(
        svg.hbars(
            [f"{c['display']}" for c in conds.values()],
            {
                "real": [c["real"] or 0 for c in conds.values()],
                "synthetic": [c["synthetic"] or 0 for c in conds.values()],
            },
            "share of patients with each condition",
            as_shares=False,
        )
    )
    cv = d["associations"]["cramers_v"]
    heat = Markup(
        svg.heatmap(
            cv["variables"], cv["difference"], "|Cramér's V real - synthetic| per variable pair"
        )
    )
    return {
        "attributes": attrs,
        "channels": chans,
        "conditions": cond_chart,
        "heatmap": heat,
        "largest": cv["largest"],
        "conditions_table": conds,
    }


def timeseries_view(result: Mapping[str, Any]) -> dict[str, Any]:
    d = result["details"]
    epp, gaps = d["events_per_patient"], d["gaps"]
    charts = [
        Markup(
            svg.bars(
                epp["labels"],
                {"real": epp["real"], "synthetic": epp["synthetic"]},
                f"events per patient (TVD {fmt(epp['tvd'])})",
                width=540,
            )
        ),
        Markup(
            svg.bars(
                [f"{lab} d" for lab in gaps["labels"]],
                {"real": gaps["real"], "synthetic": gaps["synthetic"]},
                f"days between visits (TVD {fmt(gaps['tvd'])})",
            )
        ),
    ]
    edges = d["time_edges"]
    mids = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
    trajectories = [
        Markup(
            svg.lines(
                {
                    "real": (mids, c["trajectory_real"]),
                    "synthetic": (mids, c["trajectory_synthetic"]),
                },
                f"{name}: mean value over time",
                x_range=(edges[0], edges[-1]),
                x_label="days since time zero",
                width=300,
                height=200,
            )
        )
        for name, c in d["channels"].items()
        if any(v is not None for v in c["trajectory_real"] + c["trajectory_synthetic"])
    ]
    gallery = [
        gallery_card(p, d["gallery"]["horizon_days"])
        for p in d.get("gallery", {}).get("patients", [])
    ]
    measured = {
        name: c
        for name, c in d["channels"].items()
        if c["lag1_pairs_real"] or c["lag1_pairs_synthetic"]
    }
    return {
        "charts": charts,
        "trajectories": trajectories,
        "gallery": gallery,
        "channels": measured,
    }


def gallery_card(patient: Mapping[str, Any], horizon: float) -> dict[str, Any]:
    """One synthetic patient: a line of attributes and conditions, one small chart per channel."""
    attrs = ", ".join(f"{k} {v}" for k, v in patient["attributes"].items() if v is not None)
    conditions = (
        ", ".join(f"{c['display']} (day {c['onset']:g})" for c in patient["conditions"]) or "none"
    )
    charts = []
    for s in patient["channels"].values():
        band = tuple(s["normal"]) if s["normal"] else None
        ys = list(s["value"]) + (list(band) if band else [])
        pad = (max(ys) - min(ys)) * 0.15 or 1.0
        charts.append(
            Markup(
                svg.lines(
                    {"value": (s["time"], s["value"])},
                    f"{s['display'][:40]} ({s['unit']})",
                    band=band,
                    x_range=(0.0, horizon),
                    y_range=(max(s["min"], min(ys) - pad), min(s["max"], max(ys) + pad)),
                    x_label="day",
                    width=265,
                    height=170,
                    colours=(svg.SYNTH,),
                    show_legend=False,
                )
            )
        )
    return {
        "id": patient["patient_id"],
        "attributes": attrs,
        "conditions": conditions,
        "events": patient["events"],
        "charts": charts,
    }


def utility_view(result: Mapping[str, Any]) -> dict[str, Any]:
    d = result["details"]
    roc = Markup(
        svg.lines(
            {
                "train on real": (d["roc_real"]["fpr"], d["roc_real"]["tpr"]),
                "train on synthetic": (d["roc_synthetic"]["fpr"], d["roc_synthetic"]["tpr"]),
            },
            "ROC on real holdout patients",
            x_range=(0, 1),
            y_range=(0, 1),
            diagonal=True,
            x_label="false positive rate",
            y_label="TPR",
        )
    )
    return {"roc": roc}


def result_view(result: Mapping[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {
        "r": result,
        "plain": PLAIN_BY_NAME.get(result["name"], PLAIN_WORDS.get(result["kind"], "")),
        "metrics": [
            (k, fmt(v), fmt(result["baseline"].get(k)) if k in result["baseline"] else "")
            for k, v in sorted(result["metrics"].items())
        ],
        "parameters": json.dumps(result["parameters"], indent=1, sort_keys=True),
    }
    if result["status"] != "ok":
        return view
    if result["name"] == "fidelity":
        view["fidelity"] = fidelity_view(result)
    elif result["name"] == "timeseries":
        view["timeseries"] = timeseries_view(result)
    elif result["name"] == "utility":
        view["utility"] = utility_view(result)
    elif result["name"] == "subgroups":
        view["groups"] = result["details"]["groups"]
    else:
        view["charts"] = generic_charts(result["details"])
    return view


def epsilon_view(document: Mapping[str, Any]) -> dict[str, Any]:
    """The accounted epsilon beside the empirical lower bounds the attacks found."""
    model = document["provenance"].get("model") or {}
    record = model.get("privacy_record") or {}
    lower = [
        (r["name"], k, fmt(v))
        for r in document["results"]
        if r["kind"] == "privacy"
        for k, v in sorted(r["metrics"].items())
        if "epsilon" in k
    ]
    return {"epsilon": record.get("epsilon"), "delta": record.get("delta"), "lower": lower}


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
            rows.append(
                {
                    "title": title,
                    "verdict": "NOT RUN",
                    "text": "Not assessed under this policy on these inputs.",
                }
            )
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


def render_html(document: Mapping[str, Any]) -> str:
    """The report page for a report document (the content of ``report.json``)."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt
    views = [result_view(r) for r in document["results"]]
    by_kind = {
        k: [v for v in views if v["r"]["kind"] == k] for k in ("privacy", "fidelity", "utility")
    }
    return env.get_template("report.html.j2").render(
        doc=document,
        views=by_kind,
        epsilon=epsilon_view(document),
        plain=plain_summary(document),
        provenance=json.dumps(document["provenance"], indent=1, sort_keys=True),
        policy=json.dumps(document["policy"], indent=1, sort_keys=True),
    )
