"""The strategy study end to end on a tiny random model (plumbing, not numbers), and `forgetless demo tiny`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from forgetless.cli.main import app
from forgetless.workflow.run import DEFAULT_TRAINING
from forgetless.workflow.study import (
    DEFAULT_STRATEGIES,
    RECOVERY_NAME,
    STRATEGIES,
    StudyOptions,
    choose_recommended,
    run_study,
)


@pytest.fixture(scope="module")
def study(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "study"
    options = StudyOptions(model=str(tiny_model_dir), out=str(out), quick=True, steps=2, per_type=4,
                           max_length=48, batch_size=4, alphas=(0.5,), samples=2,
                           max_new_tokens=6, check_max_new_tokens=8)
    with pytest.MonkeyPatch.context() as patch:  # a random model's own answers never end: replay shipped examples
        defaults = DEFAULT_TRAINING["replay"]
        patch.setitem(DEFAULT_TRAINING, "replay", {**defaults, "source": "bundled"})
        return run_study(options)


def test_every_strategy_has_a_row_with_numbers(study):
    names = [r.name for r in study.rows]
    for strategy in (s for s in STRATEGIES if s.key in DEFAULT_STRATEGIES):
        assert strategy.name in names
        row = study.row(strategy.name)
        for est in (row.domain_gain, row.knowledge_drop, row.behaviour_drop):
            assert est is not None and est.value is not None
        assert row.verdict in ("forgetting", "no_forgetting", "inconclusive")
        assert row.checklist_after is not None
        assert row.command and row.config and "max_steps: 2" in row.config
        assert row.curve, f"{row.name}: no monitor curve"
    assert study.row("LoRA").kl is not None and study.row("aggressive full").kl is not None
    assert (study.out / "before.json").is_file()
    assert (study.out / "lora-replay" / "compare.json").is_file()


def test_report_and_study_json(study):
    html = (study.out / "report.html").read_text()
    lineup = [s.name for s in STRATEGIES if s.key in DEFAULT_STRATEGIES]
    for name in lineup:
        assert name in html.replace("&#43;", "+").replace("&amp;", "&")
    data = json.loads((study.out / "study.json").read_text())
    assert [s["name"] for s in data["strategies"]][:len(lineup)] == lineup
    assert data["options"]["steps"] == 2
    assert data["reason"] and "recovery" in data
    assert (study.out / "report.md").is_file() and (study.out / "report.json").is_file()
    assert study.sweep is not None and data["recovery"]["sweep"]["rows"]
    assert data["recovery"]["sweep"]["rows"][0]["eval_seconds"] == 0  # alpha 0: the base evaluation, reused
    # the recovered model gets a row exactly when an alpha was certified
    assert (RECOVERY_NAME in [r.name for r in study.rows]) == (study.sweep["chosen"] is not None)


def test_recovery_tests_alphas_from_the_smallest_up(tiny_model_dir, tmp_path):
    options = StudyOptions(model=str(tiny_model_dir), out=str(tmp_path / "study"), quick=True, steps=2, per_type=4,
                           max_length=48, batch_size=4, alphas=(0.25, 0.5), budget=1.0, strategies=("aggressive-full",),
                           samples=0, max_new_tokens=6, check_max_new_tokens=8)
    study = run_study(options)
    rows = study.sweep["rows"]
    assert [r["alpha"] for r in rows] == [0.0, 0.25, 0.5] and all(r["within_budget"] for r in rows)
    best = max(rows[1:], key=lambda r: (r["domain_gain"], -r["general_drop_high"], -r["alpha"]))
    assert study.sweep["chosen"] == best["alpha"]
    assert study.sweep["general_suites"] == ["general", "checklist"]  # the text suite has nothing to judge
    assert study.row(RECOVERY_NAME).domain_gain.value is not None


def test_recommendation_rule():
    from forgetless.report import Estimate, StrategyRow

    rows = [StrategyRow(name="a", verdict="forgetting", domain_gain=Estimate(value=0.5)),
            StrategyRow(name="b", verdict="no_forgetting", domain_gain=Estimate(value=0.2)),
            StrategyRow(name="c", verdict="no_forgetting", domain_gain=Estimate(value=0.3)),
            StrategyRow(name="d", verdict="inconclusive", domain_gain=Estimate(value=0.4))]
    assert choose_recommended(rows)[0] == "c"
    assert choose_recommended(rows[:1] + rows[3:])[0] == "d"
    assert choose_recommended(rows[:1])[0] is None


def test_existing_output_is_refused(tmp_path):
    from forgetless.errors import ForgetlessError

    (tmp_path / "x").write_text("keep")
    with pytest.raises(ForgetlessError, match="not empty"):
        run_study(StudyOptions(out=str(tmp_path), quick=True))
    with pytest.raises(ForgetlessError, match="unknown strategy"):
        StudyOptions(out=str(tmp_path / "new"), strategies=("nope",)).resolved()


def test_demo_tiny_cli(tmp_path):
    result = CliRunner().invoke(app, ["demo", "tiny", "--json", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    ratio = {r["method"]: r["task_a_ratio"] for r in data["mlp"]}
    assert ratio["plain"] > 10 * ratio["ewc"]
    assert (tmp_path / "tiny-demo.svg").read_text().startswith("<svg")
    assert json.loads((tmp_path / "tiny-demo.json").read_text())["seed"] == 0


def test_demo_help_has_examples():
    result = CliRunner().invoke(app, ["demo", "--help"])
    assert result.exit_code == 0 and "--quick" in result.output and "forgetless demo tiny" in result.output
