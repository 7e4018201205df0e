"""`forgetless run --data FILE --domain-suite FILE`: a user's own data and held-out questions, given by path.

The domain suite is named by path on the command line and by its stem in the results; the run must get
through its last stage with it (plumbing on the tiny random model; the real model's numbers are in
BENCHMARKS.md), and every option is checked before the first evaluation.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forgetless.cli.main import app, main
from forgetless.eval import EvalSettings
from forgetless.workflow.run import CPU_TRAIN_SECONDS, MIN_STEPS, PASSES, RunOptions, training_config, training_steps

FIXTURES = Path(__file__).parent / "fixtures"
SMALL, HELDOUT = FIXTURES / "small-train.jsonl", FIXTURES / "small-heldout.jsonl"
FAST = ["--set", "max_steps=2", "--set", "batch_size=4", "--set", "max_length=48", "--set", "replay.source=bundled",
        "--set", "monitor=", "--set", "save_steps=100"]


def test_user_data_and_held_out_suite_given_by_path(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("forgetless.workflow.run.EvalSettings",
                        functools.partial(EvalSettings, max_new_tokens=4, check_max_new_tokens=4))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "--model", str(tiny_model_dir), "--data", str(SMALL), "--domain-suite",
                                      str(HELDOUT), "--items", "2", "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "compare.json").read_text())
    assert report["domain_suites"] == ["small-heldout"]
    assert [m["metric"] for m in report["domain"]] == ["behaviour"] and report["domain"][0]["overall"]["n"] == 2  # --items 2
    assert report["tradeoff"].startswith("Learned: domain open answers ")
    assert "Learned: domain open answers" in (out / "report.md").read_text()


@pytest.mark.parametrize("option, message", [
    (["--domain-suite", "missing.jsonl"], "missing.jsonl"),
    (["--set", "learning_rat=1e-3"], "unknown key 'learning_rat'"),
    (["--set", "regularizers.0.examples=sometimes"], "examples"),
    (["--data", "nowhere.jsonl"], "nowhere.jsonl"),
])
def test_every_option_is_checked_before_the_first_evaluation(tiny_model_dir, tmp_path, monkeypatch, capsys, option,
                                                             message):
    def no_evaluation(*args, **kwargs):
        raise AssertionError("evaluated before the options were checked")

    monkeypatch.setattr("forgetless.workflow.pipeline.evaluate", no_evaluation)
    monkeypatch.setenv("COLUMNS", "1000")
    args = ["run", "--model", str(tiny_model_dir), "--data", str(SMALL), "--domain-suite", str(HELDOUT),
            "--out", str(tmp_path / "run")]
    monkeypatch.setattr(sys, "argv", ["forgetless", "--quiet", *args, *option])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err
    assert err.strip().count("\n") == 0, err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_the_training_budget_follows_the_data_and_the_device(tmp_path):
    steps, why = training_steps(469, 0.5, 8)  # passes over the data
    assert steps == PASSES * 118 and why.startswith(f"{PASSES} passes over 469 examples and 469 replay examples")
    small, why = training_steps(16, 0.5, 8)  # 16 examples: more passes, so that they are learned
    assert small == MIN_STEPS and f"raised to {MIN_STEPS}" in why
    assert training_steps(469, 0.0, 4, 2)[0] == PASSES * 59
    # on a CPU the run also gets a time budget, timed on the machine (a GPU trains the passes in full)
    said: list[str] = []
    config = training_config(RunOptions(data=str(SMALL)), tmp_path / "run" / "train", 16, said.append)
    assert config.max_steps == MIN_STEPS and config.max_seconds == CPU_TRAIN_SECONDS
    assert f"a {CPU_TRAIN_SECONDS} s training stage on this CPU" in said[0]
    chosen = training_config(RunOptions(data=str(SMALL), overrides=["max_steps=7"]), tmp_path / "b" / "train", 16)
    assert chosen.max_steps == 7 and chosen.max_seconds is None  # the user's count is the user's


def test_a_multi_pass_budget_rehearses_new_replay_examples_in_each_pass(tiny_model_dir):
    from forgetless.models import load_model
    from forgetless.train.config import validate_config
    from forgetless.train.recipe import build_data

    config = validate_config({"model": str(tiny_model_dir), "data": str(SMALL), "max_steps": 12, "batch_size": 4,
                              "replay": {"fraction": 0.25, "source": "bundled"}})
    data = build_data(config, load_model(str(tiny_model_dir)))
    assert data.in_order and data.counts["passes_built"] == 3  # 12 steps x 4 over a mix of 16 + 5
    assert data.counts["replay_examples"] == 5 and data.counts["replay_drawn"] == 15
    passes = [data.stream[i * 21:(i + 1) * 21] for i in range(3)]
    replayed = [{tuple(e["input_ids"]) for e in p if e.get("general")} for p in passes]
    assert all(len(r) == 5 for r in replayed) and not (replayed[0] & replayed[1] | replayed[1] & replayed[2])
    domain = [sorted(tuple(e["input_ids"]) for e in p if not e.get("general")) for p in passes]
    assert domain[0] == domain[1] == domain[2] and len(domain[0]) == 16  # each pass: every example once
    assert [e["input_ids"] for e in passes[0]] != [e["input_ids"] for e in passes[1]]  # shuffled pass by pass
