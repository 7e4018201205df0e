"""The SVG charts are well-formed XML for any input, escape their text, and draw what they are given."""

from __future__ import annotations

import itertools
import math
import xml.etree.ElementTree as ET

import pytest

from forgetless.report.svg import (
    grouped_bars,
    line_chart,
    nice_ticks,
    scatter_with_error_bars,
    tick_label,
)

NS = "{http://www.w3.org/2000/svg}"
NAN, INF = float("nan"), float("inf")
EVIL = "<script>alert(1)</script> & <img src=x onerror=alert(1)> \"q\" 'a' \x00\x07"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg" and root.get("viewBox")
    return root


def texts(root: ET.Element) -> str:
    return " ".join("".join(el.itertext()) for el in root.iter(f"{NS}text"))


CHARTS = {
    "scatter": lambda pts: scatter_with_error_bars(pts, "general drop", "domain gain", "Learning vs forgetting",
                                                   budget=0.05),
    "line": lambda pts: line_chart({"run": [(p[1], p[4]) for p in pts]}, "step", "drop", "Curves", hline=0.05,
                                   vline=0.5, vline_label="chosen"),
    "bars": lambda pts: grouped_bars([p[0] for p in pts], {"before": [p[1] for p in pts], "after": [p[4] for p in pts]},
                                     "By category"),
}
GOOD = [("full", 0.11, 0.07, 0.15, 0.52, 0.45, 0.59), ("lora", 0.02, -0.01, 0.05, 0.41, 0.35, 0.47)]
ODD = {
    "empty": [],
    "all nan": [("a", NAN, NAN, NAN, NAN, NAN, NAN)],
    "some nan": [("a", NAN, 0, 1, 0.3, 0.2, 0.4), ("b", 0.1, None, None, 0.2, NAN, INF), ("c", 0.0, 0, 0, 0.0, 0, 0)],
    "one point": [("only", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)],
    "infinite": [("inf", INF, -INF, INF, 1.0, 0.5, 1.5), ("ok", 0.2, 0.1, 0.3, 0.4, 0.3, 0.5)],
}


@pytest.mark.parametrize("kind", CHARTS)
@pytest.mark.parametrize("case", ["good", *ODD])
def test_charts_are_well_formed_xml_for_any_input(kind, case):
    root = parse(CHARTS[kind](GOOD if case == "good" else ODD[case]))
    assert root.find(f"{NS}title") is not None
    if case in ("empty", "all nan"):
        assert "no data" in texts(root)


@pytest.mark.parametrize("kind", CHARTS)
def test_labels_are_escaped(kind):
    pts = [(EVIL, 0.1, 0.0, 0.2, 0.3, 0.2, 0.4), ("ok", 0.2, 0.1, 0.3, 0.1, 0.0, 0.2)]
    svg = {"scatter": lambda: scatter_with_error_bars(pts, EVIL, EVIL, EVIL, budget=0.05, budget_label=EVIL),
           "line": lambda: line_chart({EVIL: [(0, 0.1), (1, 0.2)]}, EVIL, EVIL, EVIL, hline=0.1, hline_label=EVIL),
           "bars": lambda: grouped_bars([EVIL, "b"], {EVIL: [0.5, 0.6]}, EVIL, y_label=EVIL)}[kind]()
    assert "<script" not in svg and "<img" not in svg and "\x00" not in svg
    root = parse(svg)
    assert "<script>" in texts(root) or "<script>" in root.find(f"{NS}title").text  # shown as text, not markup
    assert not list(root.iter(f"{NS}script")) and not list(root.iter("script"))


def test_scatter_draws_points_error_bars_budget_and_zero_lines():
    root = parse(scatter_with_error_bars(GOOD, "x", "y", "t", budget=0.05, budget_label="budget 5 pp"))
    assert len([g for g in root.iter(f"{NS}g") if g.get("class") == "point"]) == 2
    assert any(r.get("fill") == "#009E73" for r in root.iter(f"{NS}rect"))  # the shaded budget band
    assert "budget 5 pp" in texts(root) and "full" in texts(root) and "lora" in texts(root)
    assert len([p for p in root.iter(f"{NS}path") if "H" in p.get("d", "")]) >= 2  # horizontal error bars
    no_budget = parse(scatter_with_error_bars(GOOD, "x", "y", "t"))
    assert not any(r.get("fill") == "#009E73" for r in no_budget.iter(f"{NS}rect"))


def test_line_chart_one_path_per_series_with_legend():
    root = parse(line_chart({"a": [(0, 0.0), (50, 0.1), (100, NAN)], "b": [(0, 0.0), (100, 0.3)], "empty": []},
                            "step", "drop", "t", percent=True))
    series = [g for g in root.iter(f"{NS}g") if g.get("class") == "series"]
    assert [g.find(f"{NS}title").text for g in series] == ["a", "b"]
    legend = next(g for g in root.iter(f"{NS}g") if g.get("class") == "legend")
    assert "a" in "".join(legend.itertext()) and "empty" not in "".join(legend.itertext())


def test_grouped_bars_one_rect_per_finite_value():
    root = parse(grouped_bars(["x", "y", "z"], {"before": [0.5, 0.6, NAN], "after": [0.4, None, 0.2]}, "t"))
    bars = [r for r in root.iter(f"{NS}rect") if r.find(f"{NS}title") is not None]
    assert len(bars) == 4
    assert all(float(r.get("height")) >= 0 for r in bars)


def test_nice_ticks_cover_the_range_with_round_steps():
    for lo, hi in [(0, 1), (-0.031, 0.127), (3, 3), (-5e-4, 2e-3), (0, 600), (-1e6, 1e6)]:
        ticks = nice_ticks(lo, hi)
        assert ticks[0] <= lo and ticks[-1] >= hi and 2 <= len(ticks) <= 12
        steps = {round(b - a, 12) for a, b in itertools.pairwise(ticks)}
        assert len(steps) == 1
        mantissa = steps.pop() / 10 ** math.floor(math.log10(ticks[1] - ticks[0]))
        assert any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5))
    assert nice_ticks(NAN, 1.0) == [0.0, 1.0]


def test_tick_labels():
    assert tick_label(0.05, 0.05, True) == "5"
    assert tick_label(0.025, 0.025, True) == "2.5"
    assert tick_label(-0.0, 0.1, False) == "0"
    assert tick_label(200, 200, False) == "200"
