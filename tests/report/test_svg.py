"""The inline SVG charts: well-formed, self-contained, escaped, and drawn to scale."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest

from medsynth.report import svg


def parse(chart: str) -> ET.Element:
    """The chart as XML (it must be well formed), after checking that it is self-contained."""
    root = ET.fromstring(chart)
    assert root.tag == "svg" and root.get("role") == "img"
    for bad in ("<script", "href", "http", "url("):
        assert bad not in chart.lower(), bad
    assert not re.search(r"\b(nan|inf)\b", chart.lower())  # every coordinate is a number
    return root


def bar_rects(root: ET.Element) -> list[ET.Element]:
    """The data bars: the rectangles with a hover title (legend swatches have none)."""
    return [r for r in root.iter("rect") if r.find("title") is not None]


# -- axes ---------------------------------------------------------------------------------------
def test_nice_ticks_are_round_and_cover_the_range():
    assert svg.nice_ticks(0, 1, 5) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert svg.nice_ticks(0, 100, 4) == [0, 25, 50, 75, 100]
    assert svg.nice_ticks(-1, 1, 4) == [-1, -0.5, 0, 0.5, 1]
    assert svg.nice_ticks(3, 17, 5) == [5, 10, 15]  # step 5 (raw 2.8), first multiple above 3
    assert svg.nice_ticks(5, 5) == [5]  # an empty range: one tick, no loop
    assert svg.nice_ticks(0, math.inf) == [0]
    assert svg.nice_ticks(2, 1) == [2]


def test_tick_text():
    assert [svg._tick_text(x) for x in (0, 2000, 12, 3.14159, 0.005)] == [
        "0",
        "2000",
        "12",
        "3.142",
        "0.005",
    ]


def test_frame_maps_data_to_the_plot_area():
    f = svg.Frame(200, 100, 0, 10, 0, 5)  # margins: left 48, right 12, top 40, bottom 36
    assert (f.x(0), f.x(10), f.x(5)) == (48, 188, 118)
    assert (f.y(0), f.y(5), f.y(2.5)) == (64, 40, 52)
    flat = svg.Frame(200, 100, 3, 3, 1, 1)  # a zero span does not divide by zero
    assert flat.x(3) == 48 and flat.y(1) == 64


# -- charts -------------------------------------------------------------------------------------
def test_bars_are_shares_drawn_to_scale():
    root = parse(svg.bars(["a", "b"], {"real": [1, 3], "synthetic": [2, 2]}, "Sex"))
    assert root.get("aria-label") == "Sex" and root.get("viewBox") == "0 0 360 220"
    bars = bar_rects(root)
    titles = [r.find("title").text for r in bars]
    assert titles == ["a real: 0.250", "b real: 0.750", "a synthetic: 0.500", "b synthetic: 0.500"]
    heights = [float(r.get("height")) for r in bars]
    assert heights[1] == pytest.approx(3 * heights[0], rel=0.01)
    assert heights[2] == heights[3] == pytest.approx(2 * heights[0], rel=0.01)
    assert [r.get("fill") for r in bars] == [svg.REAL, svg.REAL, svg.SYNTH, svg.SYNTH]
    legend = [t.text for t in root.iter("text")][-2:]
    assert legend == ["real", "synthetic"]
    counts = parse(svg.bars(["a", "b"], {"n": [1, 3]}, "Counts", as_shares=False))
    assert [r.find("title").text for r in bar_rects(counts)] == ["a n: 1.000", "b n: 3.000"]


def test_bars_write_every_kth_label_when_there_are_many():
    labels = [f"label {i}" for i in range(30)]
    root = parse(svg.bars(labels, {"real": list(range(30))}, "Many"))
    axis = [t.text for t in root.iter("text") if t.get("transform", "").startswith("rotate")]
    assert axis == [f"label {i}" for i in range(0, 30, 3)]  # ceil(30 / 14) = 3
    assert len(bar_rects(root)) == 30  # every bar is still drawn, with its hover title


def test_hbars_widths_are_proportional():
    root = parse(svg.hbars(["a", "b"], {"real": [1, 3]}, "Race"))
    widths = [float(r.get("width")) for r in bar_rects(root)]
    assert widths[1] == pytest.approx(3 * widths[0], rel=0.01)
    row_labels = [t.text for t in root.iter("text") if t.get("text-anchor") == "end"]
    assert row_labels == ["a", "b"]


def test_step_histogram_traces_each_bin_and_shades_the_band():
    root = parse(svg.step_histogram([0, 1, 2, 3], {"real": [1, 1, 2]}, "Glucose", band=(1, 2)))
    (line,) = root.iter("polyline")
    points = [tuple(map(float, p.split(","))) for p in line.get("points").split()]
    assert len(points) == 2 + 2 * 3  # down to zero at both ends, two corners per bin
    assert points[0][1] == points[-1][1]  # starts and ends on the x axis
    assert points[1][1] == points[3][1] > points[5][1]  # the third bin (share 0.5) is highest
    band = [r for r in root.iter("rect") if r.get("fill") == svg.BAND]
    assert len(band) == 1 and band[0].find("title").text == "normal range 1 to 2"
    outside = parse(svg.step_histogram([0, 1], {"real": [1]}, "G", band=(5, 9)))
    assert not [r for r in outside.iter("rect") if r.get("fill") == svg.BAND]


def test_lines_break_at_missing_values_and_mark_few_points():
    root = parse(svg.lines({"a": ([0, 1, 2, 3, 4], [1, 2, None, 3, 4])}, "Trend", diagonal=True))
    assert [len(p.get("points").split()) for p in root.iter("polyline")] == [2, 2]
    assert len(list(root.iter("circle"))) == 4
    assert [ln for ln in root.iter("line") if ln.get("stroke-dasharray")]  # the chance line
    xs = list(range(41))
    dense = parse(svg.lines({"a": (xs, xs)}, "Dense"))
    assert not list(dense.iter("circle"))  # more than 40 points: the line alone


def test_heatmap_colours_and_clips_labels():
    labels = ["x" * 40, "y"]
    root = parse(svg.heatmap(labels, [[None, 0.0], [0.5, 1.0]], "Associations", vmax=0.5))
    cells = [(r.get("fill"), r.find("title").text) for r in root.iter("rect")]
    assert cells == [
        ("#f4f4f4", f"{'x' * 40} x {'x' * 40}: n/a"),
        ("rgb(255,255,255)", f"{'x' * 40} x y: 0.000"),
        ("rgb(255,55,55)", f"y x {'x' * 40}: 0.500"),
        ("rgb(255,55,55)", "y x y: 1.000"),  # above vmax: full colour, not beyond
    ]
    texts = [t.text for t in root.iter("text")]
    assert texts.count("x" * 29 + "\u2026") == 2 and "x" * 40 not in texts  # row and column


def test_roc_log_puts_the_false_positive_rate_on_a_log_axis():
    root = parse(svg.roc_log({"attack": ([0.0, 0.01, 1.0], [0.0, 0.5, 1.0])}, "ROC"))
    texts = [t.text for t in root.iter("text")]
    x_ticks = [t.text for t in root.iter("text") if t.get("y") == str(240 - 36 + 14)]
    assert x_ticks == ["0.001", "0.01", "0.1", "1"]
    assert "false positive rate (log scale)" in texts and texts[-2:] == ["attack", "chance"]
    attack, chance = root.iter("polyline")
    x = [float(p.split(",")[0]) for p in attack.get("points").split()]
    assert x[0] == 48  # a false positive rate of 0 sits at the floor, the left edge
    assert x[1] == pytest.approx(48 + (368 - 48) / 3, abs=0.1)  # 0.01: a third of 1e-3..1
    assert chance.get("stroke") == svg.GREY


# -- text ---------------------------------------------------------------------------------------
def test_every_text_is_escaped():
    nasty = '<script>alert("x")</script> & co'
    charts = [
        svg.bars([nasty], {nasty: [1]}, nasty),
        svg.hbars([nasty], {nasty: [1]}, nasty),
        svg.step_histogram([0, 1], {nasty: [1]}, nasty, x_label=nasty),
        svg.lines({nasty: ([0, 1], [0, 1])}, nasty, x_label=nasty, y_label=nasty),
        svg.heatmap([nasty], [[0.1]], nasty),
        svg.roc_log({nasty: ([0, 1], [0, 1])}, nasty),
    ]
    for chart in charts:
        root = parse(chart)  # would not parse with a raw "<" or "&"
        assert "<script" not in chart and "&lt;script&gt;" in chart
        assert any("& co" in (t.text or "") for t in root.iter("text"))


def test_long_titles_are_cut_to_the_width():
    root = parse(svg.bars(["a"], {"r": [1]}, "t" * 200, width=360))
    title = root.get("aria-label")
    assert len(title) == 56 and title.endswith("\u2026")  # 360 px / 6.4 px a character
