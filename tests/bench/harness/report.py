"""Markdown tables and utility-vs-epsilon plots from the result rows of one run."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

UTILITY = ("tstr", "tvd1", "tvd2", "corr_diff", "missing_share")
PRIVACY = ("dcr_median", "dcr_share", "mia_auc", "audit_mia_auc", "audit_mia_epsilon_lower_bound")
LONGITUDINAL = ("lab_tvd", "visits_tvd", "gap_tvd", "lag1_max_diff", "lab_corr_diff")
# The shared export's README definitions (medsynth.audit.visits), beside the harness's own.
VISITS = (
    "visit_lab_tvd",
    "visit_visits_tvd",
    "visit_gap_tvd",
    "visit_lag1_mad",
    "visit_presence_gap",
    "visit_repeat_cells",
    "visit_onsets_after_last",
)
SPEED = ("fit_s", "sample_s", "peak_mb")


def _fmt(values: list) -> str:
    vals = [v for v in values if isinstance(v, (int, float)) and v is not None]
    if not vals:
        return "–"
    digits = (
        0 if abs(float(np.mean(vals))) >= 100 else (1 if abs(float(np.mean(vals))) >= 10 else 3)
    )
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    m, s = float(np.mean(vals)), float(np.std(vals, ddof=1))
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def _groups(rows: list[dict]):
    groups: dict = defaultdict(list)
    for r in rows:
        if r.get("system", "-") != "-":
            groups[(r["dataset"], r["epsilon"], r["system"])].append(r)
    return groups


def table(rows: list[dict], dataset: str, columns: tuple[str, ...]) -> list[str]:
    """One Markdown table: a row per (system, epsilon), mean ± sd over seeds."""
    head = ["system", "epsilon", "seeds", *columns]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups = _groups(rows)
    keys = sorted(
        (k for k in groups if k[0] == dataset),
        key=lambda k: (k[1] is not None, k[1] or 0, k[2]),
    )
    for key in keys:
        rs = groups[key]
        ok = [r for r in rs if r.get("ok")]
        eps = "∞ (non-private)" if key[1] is None else f"{key[1]:g}"
        if not ok:
            continue  # listed under "Did not finish"
        cells = [_fmt([r.get(c) for r in ok]) for c in columns]
        out.append(f"| {key[2]} | {eps} | {len(ok)} | " + " | ".join(cells) + " |")
    return out


def write_markdown(rows: list[dict], meta: dict, path: Path) -> None:
    lines = [
        "# Benchmark run",
        "",
        f"Command: `{meta['command']}`  ",
        f"Started {meta['started']} UTC; machine: {meta['machine']}; Python {meta['python']}; "
        f"delta {meta['delta']}; seeds {meta['seeds']}.",
        "",
    ]
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        lines += [f"## {ds}", "", "Utility (TSTR: ROC AUC or R² on the real holdout)", ""]
        lines += table(rows, ds, UTILITY)
        lines += ["", "Privacy figures", ""]
        lines += table(rows, ds, PRIVACY)
        if any(r.get("lab_tvd") is not None for r in rows if r["dataset"] == ds):
            lines += ["", "Longitudinal", ""]
            lines += table(rows, ds, LONGITUDINAL)
        if any(r.get("visit_lab_tvd") is not None for r in rows if r["dataset"] == ds):
            lines += ["", "Visits, as the export's README defines them", ""]
            lines += table(rows, ds, VISITS)
        lines += ["", "Speed (seconds, MiB)", ""]
        lines += table(rows, ds, SPEED)
        failed = [r for r in rows if r["dataset"] == ds and not r.get("ok")]
        if failed:
            lines += ["", "Did not finish", ""]
            for r in failed:
                err = " ".join(str(r.get("error", "")).split())
                lines.append(f"- {r['system']} eps {r['epsilon']} seed {r['seed']}: {err[-160:]}")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def write_plots(rows: list[dict], folder: Path, suffix: str = "") -> list[Path]:
    """``bench-<dataset>.png``: TSTR and 2-way TVD against epsilon, one line per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    groups = _groups(rows)
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        systems_ = sorted({k[2] for k in groups if k[0] == ds})
        eps_all = sorted({k[1] for k in groups if k[0] == ds and k[1] is not None})
        for ax, metric, label in (
            (axes[0], "tstr", "TSTR (ROC AUC or R², holdout)"),
            (axes[1], "tvd2", "mean 2-way TVD (lower is better)"),
        ):
            for s in systems_:
                pts = []
                for e in eps_all:
                    vals = [r.get(metric) for r in groups.get((ds, e, s), []) if r.get("ok")]
                    vals = [v for v in vals if v is not None]
                    if vals:
                        pts.append((e, float(np.mean(vals))))
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=s)
                ceiling = [r.get(metric) for r in groups.get((ds, None, s), []) if r.get("ok")]
                ceiling = [v for v in ceiling if v is not None]
                if ceiling:
                    ax.axhline(
                        float(np.mean(ceiling)),
                        linestyle="--",
                        linewidth=1,
                        label=f"{s} (non-private)",
                        color="grey" if s == "real" else None,
                    )
            ax.set_xscale("log")
            ax.set_xticks(eps_all, [f"{e:g}" for e in eps_all])
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("epsilon (delta 1e-5)")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=7, loc="best")
        fig.suptitle(f"{ds}: utility against epsilon")
        fig.tight_layout()
        path = folder / f"bench-{ds}{suffix}.png"
        # no "Software" text chunk: the same figure, the same bytes, whatever the version
        fig.savefig(path, dpi=110, metadata={"Software": None})
        plt.close(fig)
        written.append(path)
    return written
