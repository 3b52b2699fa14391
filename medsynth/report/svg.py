"""Small inline-SVG charts for the audit report, with no plotting dependency.

Each function takes plain numbers and returns one ``<svg>`` element as a string, ready to be
inlined in a self-contained HTML page (no external fonts, scripts or links). Every text is
escaped. Colours are fixed: real data dark blue, synthetic data orange, references grey.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

REAL = "#1f4e79"
SYNTH = "#d9822b"
GREY = "#8c8c8c"
BAND = "#d8ecd8"
PALETTE = (REAL, SYNTH, "#3a8a3a", "#8e44ad", GREY)
FONT = 'font-family="sans-serif" font-size="11"'


def _num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _tick_text(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 1000 and float(x).is_integer():
        return str(int(x))
    if abs(x) < 0.01:
        return f"{x:.2g}"
    return f"{x:.4g}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out, t = [], first
    while t <= hi + step * 1e-9:
        out.append(round(t, 10))
        t += step
    return out


@dataclass(frozen=True)
class Frame:
    """A plot area inside an SVG canvas mapping data coordinates to pixels."""

    width: int
    height: int
    x0: float
    x1: float
    y0: float
    y1: float
    left: int = 48
    right: int = 12
    top: int = 40
    bottom: int = 36

    def x(self, v: float) -> float:
        span = self.x1 - self.x0 or 1.0
        return self.left + (v - self.x0) / span * (self.width - self.left - self.right)

    def y(self, v: float) -> float:
        span = self.y1 - self.y0 or 1.0
        return (
            self.height
            - self.bottom
            - (v - self.y0) / span * (self.height - self.top - self.bottom)
        )

    def axes(
        self,
        x_label: str = "",
        y_label: str = "",
        x_ticks: bool = True,
        x_tick_labels: Sequence[tuple[float, str]] | None = None,
    ) -> str:
        parts = [
            f'<line x1="{self.left}" y1="{_num(self.y(self.y0))}" '
            f'x2="{self.width - self.right}" y2="{_num(self.y(self.y0))}" stroke="#444"/>',
            f'<line x1="{self.left}" y1="{self.top}" x2="{self.left}" '
            f'y2="{self.height - self.bottom}" stroke="#444"/>',
        ]
        for t in nice_ticks(self.y0, self.y1, 4):
            yy = _num(self.y(t))
            parts.append(
                f'<line x1="{self.left - 3}" y1="{yy}" x2="{self.width - self.right}" '
                f'y2="{yy}" stroke="#e4e4e4"/>'
                f'<text x="{self.left - 5}" y="{yy}" {FONT} text-anchor="end" '
                f'dominant-baseline="middle">{_tick_text(t)}</text>'
            )
        if x_ticks:
            ticks = x_tick_labels or [(t, _tick_text(t)) for t in nice_ticks(self.x0, self.x1, 5)]
            for t, text in ticks:
                xx = _num(self.x(t))
                parts.append(
                    f'<text x="{xx}" y="{self.height - self.bottom + 14}" {FONT} '
                    f'text-anchor="middle">{escape(text)}</text>'
                )
        if x_label:
            parts.append(
                f'<text x="{(self.left + self.width - self.right) / 2:.0f}" '
                f'y="{self.height - 4}" {FONT} text-anchor="middle">{escape(x_label)}'
                "</text>"
            )
        if y_label:
            parts.append(f'<text x="4" y="{self.top - 6}" {FONT}>{escape(y_label)}</text>')
        return "".join(parts)


def _svg(width: int, height: int, title: str, body: str) -> str:
    limit = max(12, int(width / 6.4))  # bold 11 px sans: about 6.4 px a character
    if len(title) > limit:
        title = title[: limit - 1] + "\u2026"
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(title)}">'
        f'<text x="{width / 2:.0f}" y="14" {FONT} font-weight="bold" '
        f'text-anchor="middle">{escape(title)}</text>{body}</svg>'
    )


def legend_width(labels: Sequence[str]) -> int:
    """Pixels a one-line legend of ``labels`` takes."""
    return sum(22 + 6 * len(label) for label in labels)


def legend(items: Sequence[tuple[str, str]], width: int, y: float = 28) -> str:
    """A one-line legend centred under the title (left-aligned when it is wider)."""
    sizes = [22 + 6 * len(label) for label, _ in items]
    x = max(4.0, (width - sum(sizes)) / 2)
    out = []
    for (label, colour), size in zip(items, sizes, strict=True):
        out.append(
            f'<rect x="{_num(x)}" y="{_num(y - 8)}" width="10" height="10" '
            f'fill="{colour}"/><text x="{_num(x + 14)}" y="{_num(y + 1)}" {FONT}>'
            f"{escape(label)}</text>"
        )
        x += size
    return "".join(out)


def _shares(counts: Sequence[float]) -> list[float]:
    total = float(sum(counts))
    return [c / total if total else 0.0 for c in counts]


def bars(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    title: str,
    *,
    width: int = 360,
    height: int = 220,
    as_shares: bool = True,
) -> str:
    """Grouped vertical bars per label, one colour per series (shares of each series' total).

    With many labels only every k-th label is written under the axis; hover shows all.
    """
    values = {k: (_shares(v) if as_shares else [float(x) for x in v]) for k, v in series.items()}
    top = max([max(v, default=0.0) for v in values.values()] + [1e-9])
    f = Frame(width, height, 0, len(labels), 0, top * 1.1, bottom=70)
    slot = (f.x(1) - f.x(0)) * 0.8
    bar_w = slot / max(1, len(values))
    body = [f.axes(y_label="share" if as_shares else "", x_ticks=False)]
    for j, (name, vals) in enumerate(values.items()):
        colour = PALETTE[j % len(PALETTE)]
        for i, v in enumerate(vals):
            x = f.x(i) + (f.x(1) - f.x(0)) * 0.1 + j * bar_w
            body.append(
                f'<rect x="{_num(x)}" y="{_num(f.y(v))}" width="{_num(max(bar_w, 0.5))}"'
                f' height="{_num(f.y(0) - f.y(v))}" fill="{colour}">'
                f"<title>{escape(labels[i])} {escape(name)}: {v:.3f}</title></rect>"
            )
    every = max(1, math.ceil(len(labels) / 14))
    for i, label in enumerate(labels):
        if i % every:
            continue
        x, y = f.x(i + 0.5), f.y(0) + 8
        body.append(
            f'<text x="{_num(x)}" y="{_num(y)}" {FONT} text-anchor="end" '
            f'transform="rotate(-40 {_num(x)} {_num(y)})">{escape(label[:18])}</text>'
        )
    body.append(legend([(k, PALETTE[j % len(PALETTE)]) for j, k in enumerate(values)], width))
    return _svg(width, height, title, "".join(body))


def hbars(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    title: str,
    *,
    width: int = 540,
    row: int | None = None,
    as_shares: bool = True,
) -> str:
    """Grouped horizontal bars, one row per label: for long lists of categories."""
    values = {k: (_shares(v) if as_shares else [float(x) for x in v]) for k, v in series.items()}
    top = max([max(v, default=0.0) for v in values.values()] + [1e-9])
    row = row or (16 if len(labels) <= 20 else 11)
    left = 190
    height = 40 + row * len(labels) + 30
    f = Frame(width, height, 0, top * 1.1, 0, len(labels), left=left, bottom=30)
    body = []
    for t in nice_ticks(0, top * 1.1, 4):
        xx = _num(f.x(t))
        body.append(
            f'<line x1="{xx}" y1="{f.top}" x2="{xx}" y2="{height - f.bottom}" '
            f'stroke="#e4e4e4"/><text x="{xx}" y="{height - f.bottom + 14}" {FONT} '
            f'text-anchor="middle">{_tick_text(t)}</text>'
        )
    bar_h = row * 0.8 / max(1, len(values))
    for i, label in enumerate(labels):
        y_top = f.top + i * row
        body.append(
            f'<text x="{left - 5}" y="{_num(y_top + row / 2)}" {FONT} text-anchor="end" '
            f'dominant-baseline="middle">{escape(label[:32])}</text>'
        )
        for j, (name, vals) in enumerate(values.items()):
            v = vals[i]
            body.append(
                f'<rect x="{left}" y="{_num(y_top + row * 0.1 + j * bar_h)}" '
                f'width="{_num(f.x(v) - left)}" height="{_num(bar_h)}" '
                f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(label)} '
                f"{escape(name)}: {v:.3f}</title></rect>"
            )
    body.append(
        f'<line x1="{left}" y1="{f.top}" x2="{left}" y2="{height - f.bottom}" stroke="#444"/>'
    )
    body.append(legend([(k, PALETTE[j % len(PALETTE)]) for j, k in enumerate(values)], width))
    return _svg(width, height, title, "".join(body))


def step_histogram(
    edges: Sequence[float],
    series: Mapping[str, Sequence[float]],
    title: str,
    *,
    x_label: str = "",
    width: int = 350,
    height: int = 200,
    as_shares: bool = True,
    band: tuple[float, float] | None = None,
) -> str:
    """Histograms over shared numeric bin edges drawn as step lines, one per series.

    Args:
        band: shade a vertical band on the x axis (e.g. the schema's normal range).
    """
    values = {k: (_shares(v) if as_shares else [float(x) for x in v]) for k, v in series.items()}
    top = max([max(v, default=0.0) for v in values.values()] + [1e-9])
    width = max(width, legend_width(list(values)) + 96)
    f = Frame(width, height, float(edges[0]), float(edges[-1]), 0, top * 1.1)
    body = []
    if band is not None:
        lo, hi = max(band[0], f.x0), min(band[1], f.x1)
        if hi > lo:
            body.append(
                f'<rect x="{_num(f.x(lo))}" y="{f.top}" width="{_num(f.x(hi) - f.x(lo))}" '
                f'height="{_num(f.y(0) - f.top)}" fill="{BAND}">'
                f"<title>normal range {lo:g} to {hi:g}</title></rect>"
            )
    body.append(f.axes(x_label=x_label, y_label="share" if as_shares else "count"))
    for j, (name, vals) in enumerate(values.items()):
        pts = [(f.x(edges[0]), f.y(0))]
        for i, v in enumerate(vals):
            pts += [(f.x(edges[i]), f.y(v)), (f.x(edges[i + 1]), f.y(v))]
        pts.append((f.x(edges[-1]), f.y(0)))
        path = " ".join(f"{_num(a)},{_num(b)}" for a, b in pts)
        colour = PALETTE[j % len(PALETTE)]
        body.append(
            f'<polyline points="{path}" fill="none" stroke-width="2" '
            f'stroke="{colour}"><title>{escape(name)}</title></polyline>'
        )
    body.append(legend([(k, PALETTE[j % len(PALETTE)]) for j, k in enumerate(values)], width))
    return _svg(width, height, title, "".join(body))


def lines(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float | None]]],
    title: str,
    *,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    x_label: str = "",
    y_label: str = "",
    diagonal: bool = False,
    band: tuple[float, float] | None = None,
    width: int = 380,
    height: int = 240,
    colours: Sequence[str] | None = None,
    show_legend: bool = True,
    x_tick_labels: Sequence[tuple[float, str]] | None = None,
) -> str:
    """Line charts (ROC curves, trajectories, timelines); None values break a line.

    Args:
        diagonal: draw the chance line y = x (for ROC curves).
        band: shade a horizontal band (e.g. the schema's normal range).
        x_tick_labels: explicit (position, text) ticks for the x axis.
    """
    xs = [x for xv, _ in curves.values() for x in xv]
    ys = [y for _, yv in curves.values() for y in yv if y is not None]
    x0, x1 = x_range or (min(xs, default=0.0), max(xs, default=1.0))
    y0, y1 = y_range or (min(ys, default=0.0), max(ys, default=1.0))
    if y1 <= y0:
        y0, y1 = y0 - 1, y1 + 1
    if show_legend:
        width = max(width, legend_width(list(curves)) + 96)
    f = Frame(width, height, x0, x1, y0, y1)
    body = []
    if band is not None:
        lo, hi = max(band[0], y0), min(band[1], y1)
        if hi > lo:
            body.append(
                f'<rect x="{f.left}" y="{_num(f.y(hi))}" width="{_num(f.x(x1) - f.left)}"'
                f' height="{_num(f.y(lo) - f.y(hi))}" fill="{BAND}">'
                f"<title>normal range {lo:g} to {hi:g}</title></rect>"
            )
    body.append(f.axes(x_label=x_label, y_label=y_label, x_tick_labels=x_tick_labels))
    if diagonal:
        body.append(
            f'<line x1="{_num(f.x(x0))}" y1="{_num(f.y(y0))}" x2="{_num(f.x(x1))}" '
            f'y2="{_num(f.y(y1))}" stroke="{GREY}" stroke-dasharray="4 3"/>'
        )
    palette = colours or PALETTE
    for j, (name, (xv, yv)) in enumerate(curves.items()):
        colour = palette[j % len(palette)]
        segment: list[str] = []
        segments: list[list[str]] = []
        for x, y in zip(xv, yv, strict=True):
            if y is None:
                segments.append(segment)
                segment = []
                continue
            segment.append(f"{_num(f.x(x))},{_num(f.y(y))}")
        segments.append(segment)
        for seg in segments:
            if len(seg) > 1:
                body.append(
                    f'<polyline points="{" ".join(seg)}" fill="none" stroke-width="2" '
                    f'stroke="{colour}"><title>{escape(name)}</title></polyline>'
                )
            for p in seg:
                cx, cy = p.split(",")
                if len(xv) <= 40:
                    body.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
    if show_legend:
        body.append(legend([(k, palette[j % len(palette)]) for j, k in enumerate(curves)], width))
    return _svg(width, height, title, "".join(body))


def _clip_text(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def heatmap(
    labels: Sequence[str],
    matrix: Sequence[Sequence[float | None]],
    title: str,
    *,
    vmax: float = 0.5,
    cell: int = 12,
    chars: int = 30,
) -> str:
    """A square matrix of non-negative values (e.g. |Cramér's V difference|), white to red.

    Rows are labelled on the left and columns above (rotated), both with ``labels`` cut to
    ``chars`` characters; hovering a cell names the full pair and the value.
    """
    n = len(labels)
    size = min(cell, 10)
    margin = 12 + int(size * 0.58 * min(chars, max((len(x) for x in labels), default=0)))
    left, top = margin, 30 + int(margin * 0.8)
    width = max(left + n * cell + int(margin * 0.65) + 10, 340)
    height = top + n * cell + 28
    body = []
    for i in range(n):
        text = escape(_clip_text(labels[i], chars))
        body.append(
            f'<text x="{left - 4}" y="{top + i * cell + cell / 2:.1f}" '
            f'font-family="sans-serif" font-size="{size}" text-anchor="end" '
            f'dominant-baseline="middle">{text}</text>'
        )
        cx, cy = left + i * cell + cell / 2, top - 4
        body.append(
            f'<text x="{cx:.1f}" y="{cy:.1f}" font-family="sans-serif" font-size="{size}" '
            f'transform="rotate(-50 {cx:.1f} {cy:.1f})">{text}</text>'
        )
        for j in range(n):
            v = matrix[i][j]
            if v is None:
                colour = "#f4f4f4"
            else:
                s = min(1.0, max(0.0, v / vmax))
                g = int(255 - 200 * s)
                colour = f"rgb(255,{g},{g})"
            body.append(
                f'<rect x="{left + j * cell}" y="{top + i * cell}" width="{cell}" '
                f'height="{cell}" fill="{colour}" stroke="#fff" stroke-width="0.5">'
                f"<title>{escape(labels[i])} x {escape(labels[j])}: "
                f"{'n/a' if v is None else f'{v:.3f}'}</title></rect>"
            )
    body.append(
        f'<text x="8" y="{height - 8}" {FONT}>darker = larger difference '
        f"(full colour at {vmax:g}); grey = not computable</text>"
    )
    return _svg(width, height, title, "".join(body))


def roc_log(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    *,
    floor: float = 1e-3,
    width: int = 380,
    height: int = 240,
) -> str:
    """ROC curves with the false positive rate on a log scale from ``floor`` to 1.

    Membership attacks matter most at low false positive rates (a few people identified with
    confidence), which a linear ROC squeezes into its left edge. The grey curve is chance.
    """
    lo = math.log10(floor)

    def logx(xs: Sequence[float]) -> list[float]:
        return [math.log10(max(float(x), floor)) for x in xs]

    grid = [lo + i * (-lo) / 60 for i in range(61)]
    series = {name: (logx(x), list(y)) for name, (x, y) in curves.items()}
    series["chance"] = (grid, [10**g for g in grid])
    colours = [PALETTE[j % (len(PALETTE) - 1)] for j in range(len(curves))] + [GREY]
    ticks = [(float(k), f"{10.0**k:g}") for k in range(int(lo), 1)]
    return lines(
        series,
        title,
        x_range=(lo, 0.0),
        y_range=(0.0, 1.0),
        width=width,
        height=height,
        x_label="false positive rate (log scale)",
        y_label="TPR",
        colours=colours,
        x_tick_labels=ticks,
    )
