"""The audit report as one self-contained HTML page.

:func:`render_html` turns the report document (the content of ``report.json``) into a page a data
owner and a compliance officer can read: the verdict first, the plain statement that audit
figures are computed on real data and not covered by the DP guarantee, the checks, what each risk
means in plain words, the charts (inline SVG from :mod:`medsynth.report.svg`) and the technical
detail last. The page loads nothing: no scripts, fonts, images or style sheets from elsewhere.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from medsynth.audit.fidelity import MISSING
from medsynth.report import svg
from medsynth.report.words import (
    PLAIN_BY_NAME,
    PLAIN_WORDS,
    banner,
    plain_reason,
    plain_summary,
)

TEMPLATES = Path(__file__).resolve().parent / "templates"


# -- formatting ------------------------------------------------------------------------------------
SIGNIFICANT = 3  # digits of every figure on the page; report.json keeps them all
SUPERSCRIPT = str.maketrans(
    "-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"
)


def number(x: float, digits: int = SIGNIFICANT) -> str:
    """``x`` rounded to ``digits`` significant digits, in plain positional notation from 0.0001
    to a million (trailing zeros dropped, thousands separated), else as ``3.47 × 10⁻⁶``."""
    if not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    rounded = round(x, digits - 1 - mag)
    if rounded != 0:
        mag = math.floor(math.log10(abs(rounded)))  # 9.996 rounds to 10.0
    if mag < -4 or mag >= 6:
        mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa} \u00d7 10{str(int(exponent)).translate(SUPERSCRIPT)}"
    decimals = max(0, digits - 1 - mag)
    text = f"{rounded:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def fmt(value: Any) -> str:
    """A figure for people: estimates with their interval, every number to 3 significant digits
    (:func:`number`; integers whole, with thousands separated)."""
    if value is None:
        return "n/a"
    if isinstance(value, Mapping) and "value" in value:
        core = fmt(value["value"])
        if value.get("ci_low") is not None and value.get("ci_high") is not None:
            pct = number(100 * float(value["confidence"]))
            core += f" [{fmt(value['ci_low'])}, {fmt(value['ci_high'])}] ({pct}% CI)"
        return core
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return number(value)
    return str(value)


def value_range(
    values: list[float | None], low: float, high: float, normal: list[float] | None
) -> tuple[float, float]:
    """The y range of a channel's chart: its normal range (else the data) widened by half its
    width on each side and to every value, within the schema's bounds ``[low, high]``.

    Anchoring the scale on the public normal range keeps a small drift (168 to 172 cm of
    height) from filling the chart and looking like a large one.
    """
    data = [float(v) for v in values if v is not None]
    if normal:
        lo, hi = float(normal[0]), float(normal[1])
    elif data:
        lo, hi = min(data), max(data)
    else:
        lo, hi = float(low), float(high)
    lo, hi = min([lo, *data]), max([hi, *data])
    pad = max(hi - lo, 0.05 * (float(high) - float(low))) * 0.25
    return max(float(low), lo - pad), min(float(high), hi + pad)


def drop_empty_missing(
    labels: list[str], series: Mapping[str, list[float]]
) -> tuple[list[str], dict[str, list[float]]]:
    """Leave out the "(missing)" level of a chart when no series has anything in it."""
    keep = [
        i
        for i, label in enumerate(labels)
        if label != MISSING or any(float(v[i] or 0) > 0 for v in series.values())
    ]
    return [labels[i] for i in keep], {k: [v[i] for i in keep] for k, v in series.items()}


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
                series = {k.replace("_", " "): v for k, v in series.items()}
                charts.append(Markup(svg.step_histogram(edges, series, title)))
                return
        for key, child in node.items():
            name = str(key).replace("_", " ")
            visit(child, f"{title}: {name}" if title else name)

    visit(details, "")
    return charts


# -- per-evaluator views ------------------------------------------------------------------------
def fidelity_view(result: Mapping[str, Any]) -> dict[str, Any]:
    d = result["details"]
    marg = d["marginals"]
    names = d["associations"]["labels"]
    attrs = []
    for name, e in marg["attributes"].items():
        labels, series = drop_empty_missing(
            list(e["display_labels"]),
            {"real": e["real"], "synthetic": e["synthetic"]},
        )
        chart = svg.hbars if len(labels) > 14 else svg.bars
        title = f"{names.get(name, name)} (TVD {fmt(e['tvd'])})"
        attrs.append(Markup(chart(labels, series, title)))
    chans = [
        Markup(
            svg.step_histogram(
                e["edges"],
                {"real": e["real"], "synthetic": e["synthetic"]},
                f"{svg_short(e.get('display', name))} (TVD {fmt(e['tvd'])}, KS {fmt(e['ks'])})",
                x_label=e["unit"],
                band=tuple(e["normal"]) if e.get("normal") else None,
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
            [names.get(v, v) for v in cv["variables"]],
            cv["difference"],
            "|Cramér's V real - synthetic| per variable pair",
        )
    )
    largest = [
        {**p, "a": names.get(p["a"], p["a"]), "b": names.get(p["b"], p["b"])} for p in cv["largest"]
    ]
    return {
        "attributes": attrs,
        "channels": chans,
        "conditions": cond_chart,
        "heatmap": heat,
        "largest": largest,
        "conditions_table": conds,
    }


def svg_short(display: str) -> str:
    """A channel's LOINC display without its bracketed property part, for chart titles."""
    return display.split(" [")[0]


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
    trajectories = []
    for name, c in d["channels"].items():
        values = c["trajectory_real"] + c["trajectory_synthetic"]
        if all(v is None for v in values):
            continue
        low, high = c.get("min"), c.get("max")
        y_range = value_range(values, low, high, c.get("normal")) if low is not None else None
        band = c.get("normal")
        trajectories.append(
            Markup(
                svg.lines(
                    {
                        "real": (mids, c["trajectory_real"]),
                        "synthetic": (mids, c["trajectory_synthetic"]),
                    },
                    f"{svg_short(c.get('display', name))} ({c.get('unit', '')}): mean over time",
                    x_range=(edges[0], edges[-1]),
                    y_range=y_range,
                    band=tuple(band) if band else None,
                    x_label="days since time zero",
                    width=300,
                    height=200,
                )
            )
        )
    found = d["gallery"]
    gallery = [gallery_card(p, found["horizon_days"], i) for i, p in enumerate(found["patients"])]
    measured = {
        name: c
        for name, c in d["channels"].items()
        if c["lag1_pairs_real"] or c["lag1_pairs_synthetic"]
    }
    return {
        "charts": charts,
        "trajectories": trajectories,
        "gallery": gallery,
        "gallery_note": found["note"],
        "channels": measured,
    }


def gallery_card(patient: Mapping[str, Any], horizon: float, index: int) -> dict[str, Any]:
    """One synthetic patient: a line of attributes and conditions, one small chart per channel.

    Each chart's y axis spans the channel's normal range (the green band) widened to every
    value, within the schema's bounds, so that ordinary variation does not look dramatic; the
    x axis spans the patient's measured days, the same on every chart of the patient.
    """
    pairs = patient["attributes"]
    pairs = pairs.items() if isinstance(pairs, Mapping) else pairs
    attrs = ", ".join(f"{k} {v}" for k, v in pairs if v is not None)
    conditions = (
        ", ".join(f"{c['display']} (day {c['onset']:g})" for c in patient["conditions"]) or "none"
    )
    times = [t for s in patient["channels"].values() for t in s["time"]]
    first, last = (min(times), max(times)) if times else (0.0, horizon)
    pad = max(0.05 * (last - first), 15.0)
    x_range = (max(0.0, first - pad), last + pad)
    charts = []
    for s in patient["channels"].values():
        band = tuple(s["normal"]) if s["normal"] else None
        charts.append(
            Markup(
                svg.lines(
                    {"value": (s["time"], s["value"])},
                    f"{svg_short(s['display'])[:40]} ({s['unit']})",
                    band=band,
                    x_range=x_range,
                    y_range=value_range(s["value"], s["min"], s["max"], s["normal"]),
                    x_label="day (of the patient's record)",
                    width=265,
                    height=170,
                    colours=(svg.SYNTH,),
                    show_legend=False,
                )
            )
        )
    return {
        "title": f"Synthetic patient {index + 1}",
        "row": patient.get("row"),
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
        if "epsilon" in k and "accounted" not in k
    ]
    return {"epsilon": record.get("epsilon"), "delta": record.get("delta"), "lower": lower}


def render_html(document: Mapping[str, Any]) -> str:
    """The report page for a report document (the content of ``report.json``)."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt
    env.globals["reason"] = lambda check: plain_reason(check, document)
    views = [result_view(r) for r in document["results"]]
    by_kind = {
        k: [v for v in views if v["r"]["kind"] == k] for k in ("privacy", "fidelity", "utility")
    }
    return env.get_template("report.html.j2").render(
        doc=document,
        views=by_kind,
        epsilon=epsilon_view(document),
        plain=plain_summary(document),
        banner=banner(document),
        provenance=json.dumps(document["provenance"], indent=1, sort_keys=True),
        policy=json.dumps(document["policy"], indent=1, sort_keys=True),
    )
