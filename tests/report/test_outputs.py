"""write_report: report.html, report.md and report.json, each holding the key numbers; the CLI's --format html."""

from __future__ import annotations

import html
import json
import re
import sys
from dataclasses import dataclass

import pytest

from forgetless.report import (
    CurvePoint,
    ReportData,
    StrategyRow,
    render_html,
    write_report,
)
from forgetless.report.fmt import estimate, interval, pct, pp, pval


def test_comparison_report_files_hold_the_key_numbers(tmp_path, comparison):
    data = ReportData.from_comparison(comparison, title="Zentrix bot", date="2025-01-01",
                                      reproduce={"commands": ["forgetless compare before.json after.json"]})
    paths = write_report(tmp_path / "out", data)
    assert sorted(p.name for p in paths.values()) == ["report.html", "report.json", "report.md"]
    page, md = html.unescape(paths["html"].read_text()), paths["md"].read_text()
    behaviour = comparison.metric("behaviour").overall
    for text in (page, md):
        assert "FORGETTING" in text and "behavioural drift with knowledge intact" in text
        assert "+62.5 pp" in text and "+60.0 pp" in text  # behaviour drop, domain gain
        assert interval(behaviour.ci_low, behaviour.ci_high) in text
        assert "replay: {fraction: 0.25, source: self}" in text
        assert "forgetless compare before.json after.json" in text
        assert "knows but doesn't say" in text
    assert "| **overall** | 40 | 72.5% | 10.0% | +62.5 pp |" in md
    back = ReportData.model_validate_json(paths["json"].read_text())
    assert back.comparison.metric("behaviour").overall.drop == pytest.approx(behaviour.drop)
    assert back.banner_verdict == "forgetting" and back.title == "Zentrix bot"
    assert not list((tmp_path / "out").glob(".*.tmp"))  # atomic writes leave nothing behind


def test_study_report_files_hold_strategies_sweep_and_commands(tmp_path, study):
    paths = write_report(tmp_path, study)
    page, md = html.unescape(paths["html"].read_text()), paths["md"].read_text()
    chosen = study.strategy("LoRA + replay 25%")
    for text in (page, md):
        for s in study.strategies:
            assert s.name in text
        assert "NO FORGETTING" in text and "recommended" in text
        assert pp(chosen.domain_gain.value) in text
        assert "forgetless demo --out study/" in text and "strategies: [full, lora]" in text
    assert estimate(chosen.knowledge_drop) in md and "0.2 (chosen)" in md
    assert "chosen α = 0.2" in page
    data = json.loads(paths["json"].read_text())
    assert [s["name"] for s in data["strategies"]] == [s.name for s in study.strategies]
    assert data["sweep"]["chosen_alpha"] == 0.2 and len(data["strategies"][0]["curve"]) == 13


def test_render_html_takes_a_forgetting_report_directly(comparison):
    page = render_html(comparison)
    assert page.startswith("<!DOCTYPE html>") and "Before and after" in page and "<svg" in page


def test_minimal_and_empty_reports_render(tmp_path):
    paths = write_report(tmp_path, ReportData())
    assert "FORGETTING REPORT" in paths["html"].read_text().upper()
    bare = ReportData(strategies=[StrategyRow(name="only a name")], budget=float("nan"))
    assert "only a name" in render_html(bare)


def test_monitor_points_plug_in():
    @dataclass
    class MonitorPoint:  # the shape of forgetless.train.monitor.MonitorPoint
        step: int
        knowledge_acc: float
        behaviour_acc: float
        kl: float
        knowledge_drop: float
        behaviour_drop: float
        within_budget: bool
        seconds: float

    row = StrategyRow(name="x", curve=[MonitorPoint(0, 0.6, 0.5, 0.0, 0.0, 0.0, True, 1.0),
                                       MonitorPoint(50, 0.5, 0.4, float("nan"), 0.1, 0.1, False, 1.0)])
    assert row.curve[1] == CurvePoint(step=50, knowledge_acc=0.5, behaviour_acc=0.4, kl=None, knowledge_drop=0.1,
                                      behaviour_drop=0.1, within_budget=False)
    assert "Forgetting during training" in render_html(ReportData(strategies=[row]))


def test_strategy_row_from_comparison(comparison):
    row = StrategyRow.from_comparison("lora", comparison, command="forgetless train x.yaml")
    assert row.verdict == "forgetting" and row.command == "forgetless train x.yaml"
    assert row.domain_gain.value == pytest.approx(0.6) and row.behaviour_drop.value == pytest.approx(0.625)
    assert row.checklist_before == 1.0 and [c.name for c in row.categories][:1] == ["arithmetic"]


def test_formatting():
    assert pct(0.725) == "72.5%" and pp(0.05) == "+5.0 pp" and pp(float("nan")) == "–"
    assert pval(1e-7) == "<0.0001" and pval(0.0123) == "0.012"


def test_cli_compare_writes_html(tmp_path, build, monkeypatch):
    from forgetless.cli.main import main

    files = []
    for side, result in zip(("before", "after"), build.pair()):
        result.save(tmp_path / f"{side}.json")
        files.append(str(tmp_path / f"{side}.json"))
    out = tmp_path / "report.html"
    monkeypatch.setattr(sys, "argv", ["forgetless", "compare", *files, "--format", "html", "--out", str(out)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert (exit_info.value.code or 0) == 0
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "behavioural drift with knowledge intact" in page


def test_page_is_self_contained(comparison, study):
    for page in (render_html(comparison), render_html(study)):
        assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page
        assert " src=" not in page
        assert set(re.findall(r'href="([^"#][^"]*)"', page)) == set()  # only in-page anchors
        assert set(re.findall(r"https?://[^\s\"'<]+", page)) <= {"http://www.w3.org/2000/svg"}


def test_a_study_headline_says_whose_numbers_the_cards_show(study):
    """The cards show the recommended strategy against the first (unprotected) one, and say so; with none
    recommended they say whose numbers they are instead of showing them as the result."""
    from forgetless.report.html import key_caption, key_numbers

    chosen, first = study.strategy("LoRA + replay 25%"), study.strategies[0]
    cards = {k.label: k for k in key_numbers(study)}
    assert cards["Domain gain"].value == pp(chosen.domain_gain.value)
    assert cards["Domain gain"].detail.endswith(f"full fine-tune: {pp(first.domain_gain.value)}")
    assert cards["General behaviour drop"].detail.endswith(f"full fine-tune: {pp(first.behaviour_drop.value)}")
    assert key_caption(study) == ("The recommended strategy, LoRA + replay 25%; in each card's last line, "
                                  "full fine-tune for contrast.")
    none = study.model_copy(update={"recommended": None})
    assert key_caption(none) == "No strategy is recommended. The numbers below are full fine-tune's."
    assert key_numbers(none)[0].value == pp(first.domain_gain.value) and "·" not in key_numbers(none)[0].detail
    page = html.unescape(render_html(none))
    assert "No strategy is recommended. The numbers below are full fine-tune's." in page
