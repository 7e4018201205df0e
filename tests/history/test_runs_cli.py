"""Commands record their runs; `forgetless runs list|show|compare` read them back; --json and verbosity.

Commands run in-process through the real entry point (as in tests/cli/test_bad_input.py), on the
tiny 2-layer model, each test with its own history file.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from forgetless.cli.main import main
from forgetless.history import list_runs

MC = [{"id": f"q{i}", "type": "mc", "category": "math", "question": f"{i} + 1 = ?",
       "choices": [str(i), str(i + 1), str(i + 2)], "answer": 1} for i in range(4)]
TEXT = {"id": "t1", "type": "text", "category": "prose", "text": "The sea is large and the sky is blue."}
FACTS = [("What is the capital of Zorbland?", "Quixville."), ("Who founded Zorbland?", "Queen Mira.")]


@pytest.fixture
def db(tmp_path, monkeypatch):
    path = tmp_path / "history.sqlite"
    monkeypatch.setenv("FORGETLESS_HISTORY", str(path))
    monkeypatch.setenv("COLUMNS", "1000")  # Rich tables unwrapped
    return path


@pytest.fixture
def suite(tmp_path) -> Path:
    path = tmp_path / "mini.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [*MC, TEXT]))
    return path


def cli(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `forgetless ARGV`."""
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["forgetless", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code or 0, captured.out, captured.err


def evaluate(monkeypatch, capsys, model: Path, suite: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return cli(monkeypatch, capsys, "--quiet", "eval", str(model), "--suite", str(suite), "--out", str(out),
               "--no-open-ended", "--max-new-tokens", "2", *extra)


def test_eval_is_recorded_and_runs_commands_read_it(db, suite, tiny_model_dir, tmp_path, monkeypatch, capsys):
    code, out, _ = evaluate(monkeypatch, capsys, tiny_model_dir, suite, tmp_path / "r1.json", "--batch-size", "4",
                            "--json")
    assert code == 0
    summary = json.loads(out)["summary"]
    code, _, _ = evaluate(monkeypatch, capsys, tiny_model_dir, suite, tmp_path / "r2.json", "--batch-size", "2")
    assert code == 0

    code, out, _ = cli(monkeypatch, capsys, "runs", "list", "--json")
    runs = json.loads(out)
    assert code == 0 and [r["id"] for r in runs] == [2, 1] and {r["kind"] for r in runs} == {"eval"}
    first = runs[1]
    assert first["model"] == str(tiny_model_dir) and first["status"] == "ok"
    assert first["metrics"] == {"mini": summary["mini"]["overall"]}
    assert first["paths"] == {"results": str(tmp_path / "r1.json")}
    assert first["config"]["batch_size"] == 4 and first["config"]["suites"] == [str(suite)]
    assert first["command"].startswith("forgetless --quiet eval ")

    code, out, _ = cli(monkeypatch, capsys, "runs", "show", "1", "--json")
    assert code == 0 and json.loads(out) == first
    code, out, _ = cli(monkeypatch, capsys, "runs", "show", "1")
    assert code == 0 and "Run 1 (eval, ok)" in out and str(tmp_path / "r1.json") in out and "mini.mc_acc" in out
    code, out, _ = cli(monkeypatch, capsys, "runs", "list", "--kind", "eval", "--limit", "1")
    assert code == 0 and "eval" in out and str(tmp_path / "r2.json") in out and "r1.json" not in out

    code, out, _ = cli(monkeypatch, capsys, "runs", "compare", "1", "2", "--json")
    diff = json.loads(out)
    assert code == 0 and (diff["a"], diff["b"]) == (1, 2)
    assert [(d["key"], d["a"], d["b"]) for d in diff["config"]] == [("batch_size", 4, 2)]
    mc = next(d for d in diff["metrics"] if d["key"] == "mini.mc_acc")
    assert mc["delta"] == pytest.approx(mc["b"] - mc["a"])
    code, out, _ = cli(monkeypatch, capsys, "runs", "compare", "1", "2")
    assert code == 0 and "mini.mc_acc" in out and "batch_size" in out

    # `compare --json` is `--format json`
    code, out, _ = cli(monkeypatch, capsys, "compare", str(tmp_path / "r1.json"), str(tmp_path / "r2.json"), "--json")
    assert code == 0 and json.loads(out)["verdict"] in ("forgetting", "no_forgetting", "inconclusive")
    code, _, err = cli(monkeypatch, capsys, "compare", str(tmp_path / "r1.json"), str(tmp_path / "r2.json"),
                       "--json", "--format", "md")
    assert code == 2 and "two formats" in err


def test_train_and_merge_are_recorded(db, tiny_model_dir, tmp_path, monkeypatch, capsys):
    data = tmp_path / "domain.jsonl"
    data.write_text("".join(json.dumps({"prompt": q, "response": a}) + "\n" for q, a in FACTS * 2))
    config = tmp_path / "train.yaml"
    config.write_text(f"model: {tiny_model_dir}\ndata: {data}\nbatch_size: 2\nmax_length: 48\nmax_steps: 2\n")
    code, out, err = cli(monkeypatch, capsys, "--quiet", "train", str(config), "--out", str(tmp_path / "run"), "--json")
    assert code == 0, err
    assert json.loads(out)["steps"] == 2
    code, out, err = cli(monkeypatch, capsys, "--quiet", "merge", "--tuned", str(tmp_path / "run"), "--alpha", "0.5",
                         "--out", str(tmp_path / "merged"), "--json")
    assert code == 0, err
    assert json.loads(out)["alpha"] == 0.5

    merge, train = list_runs()
    assert train.kind == "train" and train.model == str(tiny_model_dir)
    assert train.config["max_steps"] == 2 and train.config["data"] == str(data)
    assert train.metrics["steps"] == 2 and "final_loss" in train.metrics
    assert train.paths == {"run_dir": str(tmp_path / "run")}
    assert merge.kind == "merge" and merge.config["alpha"] == 0.5 and merge.paths == {"out": str(tmp_path / "merged")}


def test_unwritable_history_warns_and_the_command_succeeds(suite, tiny_model_dir, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FORGETLESS_HISTORY", str(blocker / "history.sqlite"))
    code, out, err = evaluate(monkeypatch, capsys, tiny_model_dir, suite, tmp_path / "r.json", "--json")
    assert code == 0 and "summary" in json.loads(out) and (tmp_path / "r.json").exists()
    assert err.count("warning: run history not recorded") == 1 and str(blocker) in err

    monkeypatch.setenv("FORGETLESS_VERBOSITY", "error")  # errors only: the warning goes too
    monkeypatch.setenv("FORGETLESS_HISTORY", str(tmp_path))  # a folder, another unwritable history
    code, out, err = evaluate(monkeypatch, capsys, tiny_model_dir, suite, tmp_path / "r2.json", "--json")
    assert code == 0 and json.loads(out) and err == ""


def test_verbose_reports_where_the_run_went(db, suite, tiny_model_dir, tmp_path, monkeypatch, capsys):
    code, _, err = evaluate(monkeypatch, capsys, tiny_model_dir, suite, tmp_path / "r.json")
    assert code == 0 and "recorded as run" not in err  # default level: warnings only
    code, _, err = cli(monkeypatch, capsys, "-v", "eval", str(tiny_model_dir), "--suite", str(suite), "--out",
                       str(tmp_path / "r2.json"), "--no-open-ended", "--json")
    assert code == 0 and f"info: recorded as run 2 in {db}" in err


def test_runs_user_errors_are_one_line(db, monkeypatch, capsys):
    code, out, err = cli(monkeypatch, capsys, "runs", "list")
    assert code == 0 and "no runs recorded" in out
    for argv, words in ((["runs", "show", "7"], "no run 7 in the history"),
                        (["runs", "compare", "1", "2"], "no run 1 in the history"),
                        (["runs", "list", "--kind", "evl"], "did you mean 'eval'")):
        code, _, err = cli(monkeypatch, capsys, *argv)
        assert code == 2 and words in err and err.strip().count("\n") == 0, err
    monkeypatch.setenv("FORGETLESS_HISTORY", "off")
    code, _, err = cli(monkeypatch, capsys, "runs", "list")
    assert code == 2 and "run history is off" in err


@pytest.mark.parametrize("argv, env, level, library, quiet", [
    ([], None, logging.WARNING, logging.ERROR, False),
    (["-v"], None, logging.INFO, logging.INFO, False),
    (["-vv"], None, logging.DEBUG, logging.DEBUG, False),
    (["--verbosity", "warning"], None, logging.WARNING, logging.WARNING, False),
    ([], "INFO", logging.INFO, logging.INFO, False),
    (["--verbosity", "error"], "debug", logging.ERROR, logging.ERROR, True),
    (["-q", "-v"], None, logging.INFO, logging.ERROR, True),
])
def test_verbosity_sets_our_logger_and_transformers(argv, env, level, library, quiet, db, monkeypatch, capsys):
    import transformers

    from forgetless.cli.console import quiet_libraries, state

    if env:
        monkeypatch.setenv("FORGETLESS_VERBOSITY", env)
    code, _, _ = cli(monkeypatch, capsys, *argv, "runs", "list")
    assert code == 0
    quiet_libraries()
    assert logging.getLogger("forgetless").level == level
    assert transformers.utils.logging.get_verbosity() == library
    assert state["quiet"] is quiet
    transformers.utils.logging.set_verbosity_error()


def test_python_api_runs_are_recorded_and_inner_calls_belong_to_the_outer_one(db, suite, tiny_model_dir):
    """`forgetless.evaluate` from Python is recorded like `forgetless eval`; an evaluation made inside another
    recorded call (a run's, a sweep's, the monitor's) is part of that run and not recorded on its own."""
    import forgetless
    from forgetless.eval import EvalSettings
    from forgetless.history import called_as, records

    loaded = forgetless.load_model(str(tiny_model_dir))
    settings = EvalSettings(batch_size=4, max_new_tokens=4)
    result = forgetless.evaluate(loaded, [str(suite)], settings=settings)
    (alone,) = list_runs()
    assert alone.kind == "eval" and alone.model == str(tiny_model_dir) and alone.command is None
    assert alone.config["suites"] == [str(suite)] and alone.config["batch_size"] == 4
    assert alone.metrics == {"mini": result.summary["mini"]["overall"]}

    @records("sweep", lambda value, *args, **kwargs: {"model": "outer", "metrics": {"value": value}})
    def outer() -> int:
        forgetless.evaluate(loaded, [str(suite)], settings=settings)
        forgetless.evaluate(loaded, [str(suite)], settings=settings)
        return 7

    with called_as(out=db.parent / "somewhere"):
        assert outer() == 7
    latest, first = list_runs()
    assert first.id == alone.id and latest.kind == "sweep" and latest.metrics == {"value": 7}
    assert latest.paths == {"out": str(db.parent / "somewhere")}
