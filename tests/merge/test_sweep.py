"""The selection rule on synthetic rows and results, and `sweep` end to end on the tiny models."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
from typer.testing import CliRunner

from forgetless.cli.main import app
from forgetless.compare import compare
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


def _result(general_right: np.ndarray, open_right: np.ndarray | None, domain_right: np.ndarray) -> EvalResult:
    items = [ItemResult(suite="general", id=f"g{i}", type="mc", category="c", prompt="p", correct=bool(c),
                        open_correct=None if open_right is None else bool(open_right[i]))
             for i, c in enumerate(general_right)]
    items += [ItemResult(suite="domain", id=f"d{i}", type="gen", category="c", prompt="p", correct=bool(c))
              for i, c in enumerate(domain_right)]
    return EvalResult(model={}, suites=[], settings={}, versions={}, items=items)


def test_a_row_is_compare_of_the_base_and_that_alpha():
    n, m = 400, 100
    ones, lost = np.ones(n, bool), np.arange(n)
    domain = {0.0: np.arange(m) < 20, 0.5: np.arange(m) < 60, 1.0: np.arange(m) < 90}
    general = {0.0: ones, 0.5: lost >= 1, 1.0: lost >= 40}  # 0.5 loses 1 item, 1.0 loses 40
    behaviour = {0.0: ones, 0.5: ones, 1.0: lost >= 80}
    results = {a: _result(general[a], behaviour[a], domain[a]) for a in domain}
    rows = [compare_to_base(a, results[0.0], results[a], domain="domain", budget=0.02, metric="all", confidence=0.95,
                            seed=0) for a in (0.0, 0.5, 1.0)]
    base, half, full = rows
    assert base.knowledge_drop == 0 and base.domain_gain == 0 and base.within_budget
    assert half.knowledge_drop == pytest.approx(1 / n) and half.behaviour_drop == 0
    assert half.domain_gain == pytest.approx(0.4) and half.domain_gain_ci[0] > 0.25
    assert full.behaviour_drop == pytest.approx(0.2) and full.general_drop_high == full.behaviour_ci[1]
    assert half.within_budget and not full.within_budget
    assert choose_alpha(rows, 0.02) == 0.5
    # the same numbers compare() reports for that pair: drops, intervals, verdict, domain gain
    for alpha, row_ in ((0.5, half), (1.0, full)):
        report = compare(results[0.0], results[alpha], threshold=0.02, domain_suites=["domain"])
        for name in ("knowledge", "behaviour"):
            o = report.metric(name).overall
            assert getattr(row_, f"{name}_drop") == o.drop and getattr(row_, f"{name}_ci") == (o.ci_low, o.ci_high)
        gain = report.domain_metric().overall
        assert row_.verdict == report.verdict and row_.domain_gain == -gain.drop
    # no item flips: compare's interval (bootstrap and Newcombe united) does not collapse to 0
    assert 0 < half.behaviour_ci[1] < 0.02


REPS = 200


def _certification_rate() -> float:
    """How often the chosen alpha truly exceeds the budget, on simulated rows of 400 mc items: alpha 0.25
    loses nothing (and can be certified), 0.75 and 1 each lose 3% of the items, a drop equal to the
    budget of 0.03; two chances to certify a drop at the budget by luck."""
    rng = np.random.default_rng(11)
    true_loss = {0.25: 0.0, 0.75: 0.03, 1.0: 0.03}
    base = _result(np.ones(400, bool), None, np.zeros(4, bool))
    wrong = 0
    for _ in range(REPS):
        rows = []
        for alpha, p in true_loss.items():
            after = _result(rng.random(400) >= p, None, np.arange(4) < round(4 * alpha))
            rows.append(compare_to_base(alpha, base, after, domain="domain", budget=0.03, metric="all",
                                        confidence=0.95, seed=0))
        chosen = choose_alpha(rows, 0.03)
        wrong += chosen is not None and true_loss[chosen] >= 0.03
    return wrong / REPS


def test_certification_error_stays_at_the_nominal_rate():
    """At a true drop equal to the budget, a 95% interval's upper end may pass 2.5% of the time; the fixed
    sequence keeps the chance of choosing any such alpha there (3 Monte-Carlo standard errors allowed)."""
    rate = _certification_rate()
    assert rate <= 0.025 + 3 * (0.025 * 0.975 / REPS) ** 0.5


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
    grid = {"alphas": [0.5, 1], "budget": 1.0, "general_suites": [general], "domain_suite": domain, "settings": FAST}
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
def test_alphas_are_tested_from_the_smallest_up_and_stop_at_the_first_failure(full_run, suites_dir, budget_of):
    general, domain = read_suite(suites_dir[0]), read_suite(suites_dir[1])
    grid = {"alphas": [0.25, 0.5, 0.75, 1], "general_suites": [general], "domain_suite": domain, "settings": FAST}
    full = sweep(None, str(full_run), budget=1.0, **grid)
    assert [r.alpha for r in full.rows] == [0.0, 0.25, 0.5, 0.75, 1.0]
    budget = max(0.0, full.row(budget_of).general_drop_high) - 1e-9  # that row just fails
    stopped = sweep(None, str(full_run), budget=budget, **grid)
    first_failure = min(r.alpha for r in stopped.rows if r.alpha > 0 and not r.within_budget)
    assert first_failure <= budget_of and sorted(stopped.evals) == [r.alpha for r in stopped.rows]
    assert max(stopped.evals) == first_failure  # nothing after the first failure is evaluated
    assert stopped.chosen is None or stopped.chosen < first_failure
    # a row's numbers do not depend on the other alphas swept (its verdict and fit depend on the budget)
    same = {"eval_seconds": 0, "set_seconds": 0, "within_budget": None, "verdict": None, "stats": None}
    assert [asdict(r) | same for r in stopped.rows] == [asdict(full.row(r.alpha)) | same for r in stopped.rows]
    # the alpha-1 row is compare(alpha 0, alpha 1) as the report gives it
    report = compare(full.evals[0.0], full.evals[1.0], threshold=1.0, domain_suites=[domain.name])
    k = report.metric("knowledge").overall
    assert (full.row(1.0).knowledge_drop, full.row(1.0).knowledge_ci) == (k.drop, (k.ci_low, k.ci_high))
    assert full.row(1.0).verdict == report.verdict


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
