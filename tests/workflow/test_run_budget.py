"""`forgetless run --budget`: the recovery sweep as the last stage, on the tiny random model (plumbing, not numbers).

alpha 0 and 1 of the sweep are the run's own before/after evaluations, reused (0 seconds), not repeated.
"""

from __future__ import annotations

import functools
import json

import pytest
from typer.testing import CliRunner

from forgetless.cli.main import app
from forgetless.cli.run import recovery_line
from forgetless.errors import ForgetlessError
from forgetless.eval import EvalResult, EvalSettings
from forgetless.merge import MERGE_FILE
from forgetless.models import load_model
from forgetless.workflow.pipeline import Evaluation
from forgetless.workflow.run import RunOptions, recover, run
from forgetless.workflow.suites import workflow_suites

FAST = ["max_steps=2", "batch_size=4", "max_length=48", "replay.source=bundled", "monitor=", "save_steps=100"]
SHORT = functools.partial(EvalSettings, max_new_tokens=4, check_max_new_tokens=4)  # replies of a random model


@pytest.fixture(scope="module")
def swept(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run-budget") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("forgetless.workflow.run.EvalSettings", SHORT)
        return run(RunOptions(model=str(tiny_model_dir), out=str(out), per_type=2, overrides=FAST, batch_size=8,
                              budget=1.0, alphas=(0.5, 1.0)))


def test_sweep_is_written_with_one_row_per_alpha(swept):
    data = json.loads((swept.out / "sweep.json").read_text())
    assert [r["alpha"] for r in data["rows"]] == [0.0, 0.5, 1.0]
    assert data["budget"] == 1.0 and data["kind"] == "lora" and data["chosen"] == swept.sweep.chosen
    assert swept.seconds["recovery_sweep"] > 0


def test_endpoints_reuse_before_and_after(swept):
    rows = {r.alpha: r for r in swept.sweep.rows}
    assert rows[0.0].eval_seconds == rows[1.0].eval_seconds == 0.0  # reused: no evaluation
    assert rows[0.5].eval_seconds > 0
    for alpha, name in ((0.0, "before.json"), (1.0, "after.json")):
        saved = EvalResult.load(swept.out / name)
        reused = swept.sweep.evals[alpha]
        assert [it.key for it in reused.items] == [it.key for it in saved.items if it.suite in
                                                   {s.name for s in reused.suites}]
        assert {it.key: it.logliks for it in reused.items} == {it.key: it.logliks for it in saved.items
                                                               if it.key in {r.key for r in reused.items}}
    assert rows[0.0].knowledge_drop == 0 and rows[0.0].domain_gain == 0


def test_chosen_alpha_is_inside_the_budget_and_saved(swept):
    chosen, rows = swept.sweep.chosen, swept.sweep.rows
    # the rule, not just any alpha: of the certified alphas, the largest domain gain (ties: the smaller drop)
    best = max((r for r in rows if r.alpha > 0), key=lambda r: (r.domain_gain, -r.general_drop_high, -r.alpha))
    assert chosen == best.alpha and all(0 < r.general_drop_high <= 1.0 for r in rows if r.alpha > 0)
    recovered = swept.out / "recovered"
    assert json.loads((recovered / MERGE_FILE).read_text())["alpha"] == chosen
    assert load_model(str(recovered), device="cpu").source == "run"
    line = recovery_line(swept.sweep)
    assert f"alpha {chosen:g}" in line and "domain gain" in line and "general drop" in line


def test_report_shows_the_sweep(swept):
    assert "Recovery sweep" in (swept.out / "report.html").read_text()
    report = json.loads((swept.out / "report.json").read_text())
    assert [r["alpha"] for r in report["sweep"]["rows"]] == [0.0, 0.5, 1.0]
    assert report["sweep"]["chosen_alpha"] == swept.sweep.chosen
    assert "--budget 1" in report["reproduce"]["commands"][0]


def test_no_alpha_within_budget_keeps_no_model(swept, tiny_model_dir, tmp_path):
    """Known endpoints only (nothing evaluated): a base right on every general item and an 'after' wrong on
    all of them cannot fit budget 0."""
    def general(result: EvalResult, right: bool) -> EvalResult:
        items = [it.model_copy(update={"correct": right, "open_correct": right if it.type == "mc" else None})
                 if it.suite != "domain" and it.type in ("mc", "gen", "check") else it for it in result.items]
        return result.model_copy(update={"items": items})

    before, after = (EvalResult.load(swept.out / name) for name in ("before.json", "after.json"))
    tuned = load_model(swept.train["run_dir"])
    options = RunOptions(model=str(tiny_model_dir), out=str(tmp_path), per_type=2, budget=0.0, alphas=(1.0,))
    evaluation = Evaluation(suites=workflow_suites("domain", 2), settings=SHORT(batch_size=8), domain="domain")
    result = recover(options, tuned, evaluation, {0.0: general(before, True), 1.0: general(after, False)},
                     out=tmp_path, progress=None)
    assert result.row(1.0).general_drop_high > 0 and result.row(1.0).eval_seconds == 0
    assert result.chosen is None and "no alpha" in result.reason
    assert (tmp_path / "sweep.json").is_file() and not (tmp_path / "recovered").exists()
    assert recovery_line(result).startswith("recovery: no alpha within budget 0")


def test_bad_recovery_options_fail_before_compute(tmp_path):
    with pytest.raises(ForgetlessError, match="between 0"):
        run(RunOptions(out=str(tmp_path / "a"), budget=0.02, alphas=(0.5, 2.0)))
    with pytest.raises(ForgetlessError, match="budget"):
        run(RunOptions(out=str(tmp_path / "b"), budget=float("nan")))
    for args, message in ((["--alphas", "0,0.5"], "needs --budget"), (["--budget", "0.02", "--alphas", "0,x"],
                                                                      "comma-separated")):
        result = CliRunner().invoke(app, ["run", *args, "--out", str(tmp_path / "c")])
        assert isinstance(result.exception, ForgetlessError) and message in str(result.exception)
    assert not (tmp_path / "c").exists()
