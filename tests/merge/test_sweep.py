"""The selection rule on synthetic rows and results, and `sweep` end to end on the tiny models."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
from typer.testing import CliRunner

from forgetless.cli.main import app
from forgetless.errors import ForgetlessError
from forgetless.eval import EvalResult, EvalSettings, evaluate
from forgetless.eval.results import ItemResult
from forgetless.merge import MERGE_FILE, SweepRow, choose_alpha, sweep
from forgetless.merge.sweep import compare_to_base
from forgetless.models import load_model
from forgetless.suites import read_suite

FAST = EvalSettings(batch_size=8, max_new_tokens=6, check_max_new_tokens=6)


def row(alpha, gain, high):
    return SweepRow(alpha=alpha, domain_gain=gain, general_drop_high=high)


def test_choose_alpha_takes_the_largest_gain_inside_the_budget():
    rows = [row(0.0, 0.0, 0.0), row(0.25, 0.05, 0.005), row(0.5, 0.12, 0.019), row(0.75, 0.20, 0.021),
            row(1.0, 0.25, 0.08)]
    assert choose_alpha(rows, 0.02) == 0.5
    assert choose_alpha(rows, 0.1) == 1.0
    assert choose_alpha(rows, 0.01) == 0.25
    assert choose_alpha(rows, 0.021) == 0.75  # the boundary counts as inside


def test_choose_alpha_says_none_when_nothing_fits():
    rows = [row(0.0, 0.0, 0.0), row(0.5, 0.1, 0.03), row(1.0, 0.2, 0.09), row(0.7, None, None)]
    assert choose_alpha(rows, 0.02) is None
    assert choose_alpha([row(0.0, 0.0, 0.0)], 0.5) is None  # the base itself is never "chosen"


def test_choose_alpha_ties_and_no_domain_suite():
    assert choose_alpha([row(0.25, 0.1, 0.01), row(0.5, 0.1, 0.004), row(0.75, 0.1, 0.004)], 0.02) == 0.5
    assert choose_alpha([row(0.25, None, 0.01), row(0.5, None, 0.015), row(0.75, None, 0.03)], 0.02) == 0.5


def _result(general_right: np.ndarray, open_right: np.ndarray, domain_right: np.ndarray) -> EvalResult:
    items = [ItemResult(suite="general", id=f"g{i}", type="mc", category="c", prompt="p", correct=bool(c),
                        open_correct=bool(o)) for i, (c, o) in enumerate(zip(general_right, open_right))]
    items += [ItemResult(suite="domain", id=f"d{i}", type="gen" if i % 2 else "mc", category="c", prompt="p",
                         correct=bool(c)) for i, c in enumerate(domain_right)]
    return EvalResult(model={}, suites=[], settings={}, versions={}, items=items)


def test_rows_from_synthetic_results_pick_the_alpha_inside_the_budget():
    n, m = 400, 100
    ones, lost = np.ones(n, bool), np.arange(n)
    domain = {0.0: np.arange(m) < 20, 0.5: np.arange(m) < 60, 1.0: np.arange(m) < 90}
    general = {0.0: ones, 0.5: lost >= 1, 1.0: lost >= 40}  # 0.5 loses 1 item, 1.0 loses 40
    behaviour = {0.0: ones, 0.5: ones, 1.0: lost >= 80}
    results = {a: _result(general[a], behaviour[a], domain[a]) for a in domain}
    rng = np.random.default_rng(0)
    rows = [compare_to_base(a, results[0.0], results[a], general={"general"}, domain="domain", budget=0.02,
                            metric="both", rng=rng, confidence=0.95) for a in (0.0, 0.5, 1.0)]
    base, half, full = rows
    assert base.knowledge_drop == 0 and base.general_drop_high == 0 and base.domain_gain == 0
    assert half.knowledge_drop == pytest.approx(1 / n) and half.behaviour_drop == 0
    assert half.domain_gain == pytest.approx(0.4) and half.domain_gain_ci[0] > 0.25
    assert full.behaviour_drop == pytest.approx(0.2) and full.general_drop_high == full.behaviour_ci[1]
    assert half.within_budget and not full.within_budget
    assert choose_alpha(rows, 0.02) == 0.5


@pytest.mark.parametrize("run_name", ["full_run", "lora_run"])
def test_sweep_end_to_end(request, run_name, tiny_model_dir, suites_dir, tmp_path):
    run = request.getfixturevalue(run_name)
    general, domain = read_suite(suites_dir[0]), read_suite(suites_dir[1])
    out = tmp_path / "sweep"
    result = sweep(None, str(run), alphas=[1, 0.5], budget=1.0, general_suites=[general], domain_suite=domain,
                   settings=FAST, out=out)
    assert [r.alpha for r in result.rows] == [0.0, 0.5, 1.0]
    assert result.kind == ("full" if run_name == "full_run" else "lora")
    base_row = result.row(0.0)
    assert base_row.knowledge_drop == 0 and base_row.behaviour_drop == 0 and base_row.domain_gain == 0
    # alpha = 0 is the base model's own evaluation, item for item (LoRA: the adapter-disabled model; a plain
    # base differs from it by float rounding under PEFT's logits_to_keep path, ~1e-6 in log-likelihood)
    if run_name == "full_run":
        base_eval = evaluate(load_model(str(tiny_model_dir), device="cpu"), [general, domain], settings=FAST)
    else:
        tuned = load_model(str(run), device="cpu")
        with tuned.model.disable_adapter():
            base_eval = evaluate(tuned, [general, domain], settings=FAST)
    assert [(it.key, it.logliks, it.reply) for it in result.evals[0.0].items] == \
        [(it.key, it.logliks, it.reply) for it in base_eval.items]
    assert result.chosen == choose_alpha(result.rows, 1.0) and result.chosen in (0.5, 1.0)
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["chosen"] == result.chosen and len(saved["rows"]) == 3 and "evals" not in saved
    assert json.loads((out / MERGE_FILE).read_text())["alpha"] == result.chosen
    reloaded = load_model(str(out), device="cpu")
    assert reloaded.source == "run"


def test_known_endpoints_give_the_rows_a_full_sweep_gives(full_run, tiny_model_dir, suites_dir):
    """alpha 0 / 1 taken from the base's and the tuned model's own evaluations instead of evaluated again."""
    general, domain = read_suite(suites_dir[0]), read_suite(suites_dir[1])
    grid = {"alphas": [0.5, 1], "budget": 0.5, "general_suites": [general], "domain_suite": domain, "settings": FAST}
    before = evaluate(load_model(str(tiny_model_dir), device="cpu"), [general, domain], settings=FAST)
    after = evaluate(load_model(str(full_run), device="cpu"), [general, domain], settings=FAST)
    everything = sweep(None, str(full_run), **grid)
    reused = sweep(None, str(full_run), known={0: before, 1: after}, **grid)

    def rows(result):
        return [{k: v for k, v in r.items() if k not in ("eval_seconds", "set_seconds")}
                for r in result.to_dict()["rows"]]

    assert rows(reused) == rows(everything) and reused.chosen == everything.chosen
    assert reused.row(0.0).eval_seconds == reused.row(1.0).eval_seconds == 0 < reused.row(0.5).eval_seconds
    assert reused.evals[1.0].model["alpha"] == 1.0 and "alpha" not in after.model  # the caller's result is untouched
    partial = before.model_copy(update={"suites": [s for s in before.suites if s.name == general.name]})
    with pytest.raises(ForgetlessError, match="did not score"):
        sweep(None, str(full_run), known={0: partial}, **grid)


@pytest.mark.parametrize("budget_of", [0.5, 1.0])  # which full-sweep row's upper CI end sets the budget
def test_first_fit_stops_at_the_largest_alpha_inside_the_budget(full_run, suites_dir, budget_of):
    general, domain = read_suite(suites_dir[0]), read_suite(suites_dir[1])
    grid = {"alphas": [0.25, 0.5, 0.75, 1], "general_suites": [general], "domain_suite": domain, "settings": FAST}
    full = sweep(None, str(full_run), budget=1.0, **grid)
    budget = max(0.0, full.row(budget_of).general_drop_high)
    everything = sweep(None, str(full_run), budget=budget, **grid)
    first = sweep(None, str(full_run), budget=budget, first_fit=True, **grid)
    fits = [r.alpha for r in everything.rows if r.alpha > 0 and r.within_budget]
    assert first.chosen == max(fits) and first.first_fit and first.to_dict()["first_fit"]
    assert sorted(first.evals) == [0.0, *(a for a in (0.25, 0.5, 0.75, 1.0) if a >= first.chosen)]
    # each row's bootstrap is seeded by its alpha: the rows evaluated are the full sweep's own
    assert [asdict(r) | {"eval_seconds": 0, "set_seconds": 0} for r in first.rows] == \
        [asdict(everything.row(r.alpha)) | {"eval_seconds": 0, "set_seconds": 0} for r in first.rows]


def test_sweep_refusals(full_run, suites_dir):
    with pytest.raises(ForgetlessError, match="between 0"):
        sweep(None, str(full_run), alphas=[0.5, 2.0], general_suites=[str(suites_dir[0])], domain_suite=None)
    with pytest.raises(ForgetlessError, match="budget"):
        sweep(None, str(full_run), budget=-0.1, general_suites=[str(suites_dir[0])], domain_suite=None)
    with pytest.raises(ForgetlessError, match="differ"):
        sweep(None, str(full_run), general_suites=[str(suites_dir[0])], domain_suite=str(suites_dir[0]))


def test_sweep_cli_prints_a_table_and_writes_sweep_json(full_run, suites_dir, tmp_path):
    general = tmp_path / "nocheck.jsonl"  # check items would generate 160 tokens each
    general.write_text("".join(line + "\n" for line in suites_dir[0].read_text().splitlines() if '"check"' not in line))
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["sweep", "--tuned", str(full_run), "--alphas", "0,1", "--budget", "0",
                                      "--suite", str(general), "--domain-suite", str(suites_dir[1]),
                                      "--max-new-tokens", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "sweep.json").read_text())
    assert [r["alpha"] for r in data["rows"]] == [0.0, 1.0] and "alpha" in result.stdout
    assert ("chosen alpha" if data["chosen"] is not None else "no alpha chosen") in result.stdout
    if data["chosen"] is None:
        assert "no alpha" in data["reason"] and not (out / MERGE_FILE).exists()
