"""The lm-evaluation-harness bridge, on the tiny random model: a suite exported as an lm-eval task and
scored through lm-eval gives forgetless's own predictions and log-likelihoods, its results pair in
`compare`, and every user mistake is one error line with exit code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from forgetless.cli.main import main
from forgetless.compare import compare
from forgetless.eval import EvalSettings, evaluate
from forgetless.eval.prompts import render_prompt
from forgetless.eval.results import EvalResult
from forgetless.integrations.lm_eval import bridge_lm, evaluate_lm_eval, export_suite
from forgetless.models import load_model
from forgetless.suites import read_suite

ROWS = [
    {"id": "cap-fr", "type": "mc", "category": "geography", "question": "What is the capital of France?",
     "choices": ["Berlin", "Madrid", "Rome", "Paris"], "answer": 3},
    {"id": "add", "type": "mc", "category": "math", "question": "2 + 2 = ?", "choices": ["3", "4", "22"], "answer": 1},
    {"id": "water", "type": "mc", "category": "science", "question": "Water boils at sea level at",
     "choices": ["100 degrees Celsius", "50 degrees Celsius"], "answer": 0},
    {"id": "accent", "type": "mc", "category": "language", "question": "Which word means 'coffee shop'?",
     "choices": ["café", "garage", "bakery"], "answer": 0},
    {"id": "led", "type": "mc", "category": "geography", "question": "Which city is the capital of Italy?",
     "answer_prefix": "The answer is", "choices": ["Milan", "Rome"], "answer": 1},
    {"id": "open", "type": "gen", "category": "math", "prompt": "What is 3 + 4?", "answers": ["7"]},
    {"id": "fmt", "type": "check", "category": "format", "prompt": "Say hi.",
     "checks": [{"kind": "max_words", "n": 5}]},
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "probe.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny, suite_file):
    return export_suite(read_suite(suite_file), tiny.tokenizer, tmp_path_factory.mktemp("tasks"))


def test_export_writes_rendered_mc_items_and_leaves_out_the_rest(exported, tiny):
    config = yaml.safe_load(exported.yaml_path.read_text())
    assert config["task"] == exported.task == "forgetless_probe"
    assert config["output_type"] == "multiple_choice" and config["target_delimiter"] == ""
    assert config["dataset_kwargs"]["data_files"]["test"] == str(exported.data_path)
    rows = [json.loads(line) for line in exported.data_path.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["cap-fr", "add", "water", "accent", "led"]
    assert rows[0]["context"] == render_prompt(tiny.tokenizer, ROWS[0]["question"])
    assert rows[0]["targets"] == rows[0]["choices"] == ROWS[0]["choices"]
    assert rows[4]["context"] == render_prompt(tiny.tokenizer, ROWS[4]["question"]) + "The answer is"
    assert rows[4]["targets"] == [" Milan", " Rome"]  # the space after the prefix, as forgetless scores them
    assert exported.left_out == {"gen": 1, "check": 1}


def test_lm_eval_scores_match_forgetless_and_pair_in_compare(exported, tiny, suite_file):
    bridged = evaluate_lm_eval(tiny, [str(exported.yaml_path)], batch_size=3)
    native = evaluate(tiny, [read_suite(suite_file)], settings=EvalSettings(open_ended=False, batch_size=2))
    native_mc = [it for it in native.items if it.type == "mc"]
    assert [s.name for s in bridged.suites] == ["lm-eval:forgetless_probe"]
    assert len(bridged.items) == len(native_mc) == 5
    for got, want in zip(bridged.items, native_mc):
        assert (got.id, got.category, got.prompt, got.choices, got.answer) == \
               (want.id, want.category, want.prompt, want.choices, want.answer)
        assert (got.pred, got.correct, got.correct_norm) == (want.pred, want.correct, want.correct_norm)
        assert max(abs(a - b) for a, b in zip(got.logliks, want.logliks)) <= 1e-3
    # Scores do not depend on batch size, so a second run pairs item by item with the first.
    again = evaluate_lm_eval(tiny, [str(exported.yaml_path)], batch_size=1)
    report = compare(bridged, again)
    knowledge = report.metrics[0].overall
    assert (knowledge.n, knowledge.lost, knowledge.gained, knowledge.drop) == (5, 0, 0, 0.0)


def test_plain_lm_eval_scores_the_template_newline_too(exported, tiny):
    """Why the bridge keeps the boundary: stock HFLM moves the chat template's trailing newline into
    every choice, which shifts all of a question's log-likelihoods by the same constant."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    stock = HFLM(pretrained=tiny.model, tokenizer=tiny.tokenizer, batch_size=4)
    out = lm_eval.simple_evaluate(model=stock, tasks=[exported.task], log_samples=True, bootstrap_iters=0,
                                  task_manager=TaskManager(include_path=str(exported.yaml_path.parent),
                                                           include_defaults=False))
    ours = lm_eval.simple_evaluate(model=bridge_lm(tiny, exact_tasks=[exported.task]), tasks=[exported.task],
                                   log_samples=True, bootstrap_iters=0,
                                   task_manager=TaskManager(include_path=str(exported.yaml_path.parent),
                                                            include_defaults=False))
    for a, b in zip(*(sorted(o["samples"][exported.task], key=lambda s: s["doc_id"]) for o in (out, ours))):
        shift = [x[0] - y[0] for x, y in zip(a["filtered_resps"], b["filtered_resps"])]
        if a["doc"]["id"] == "led":  # its context ends in words, so nothing moves: stock lm-eval scores as we do
            assert max(map(abs, shift)) < 1e-3
        else:
            assert max(shift) < -1e-3 and max(shift) - min(shift) < 1e-3  # log p("\n"), the same for every choice
        assert a["acc"] == b["acc"]


def _run(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["forgetless", "--quiet", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code or 0, capsys.readouterr().err


def test_cli_export_then_eval_with_a_native_suite(tmp_path, tiny_model_dir, suite_file, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "1000")
    code, err = _run(monkeypatch, capsys, "export-lm-eval", str(suite_file), str(tmp_path / "tasks"),
                     "--model", str(tiny_model_dir), "--task", "probe_task")
    assert code == 0, err
    out = tmp_path / "r.json"
    code, err = _run(monkeypatch, capsys, "eval", str(tiny_model_dir), "--suite", str(suite_file), "--no-open-ended",
                     "--suite", f"lm-eval:{tmp_path / 'tasks' / 'probe_task.yaml'}", "--out", str(out))
    assert code == 0, err
    result = EvalResult.load(out)
    assert [s.name for s in result.suites] == ["probe", "lm-eval:probe_task"]
    by_key = result.by_key()
    assert by_key["lm-eval:probe_task/add"].pred == by_key["probe/add"].pred
    assert _run(monkeypatch, capsys, "compare", str(out), str(out))[0] == 0


def _rolling_task(folder: Path) -> Path:
    (folder / "d.jsonl").write_text('{"q": "Say hi", "a": "hi"}\n')
    path = folder / "rolling_task.yaml"
    path.write_text(yaml.safe_dump({"task": "rolling_task", "dataset_path": "json", "test_split": "test",
                                    "dataset_kwargs": {"data_files": {"test": str(folder / "d.jsonl")}},
                                    "output_type": "loglikelihood_rolling", "doc_to_text": "q",
                                    "doc_to_target": "a", "metric_list": [{"metric": "word_perplexity"}]}))
    return path


def test_cli_mistakes_are_one_line_and_exit_2(tmp_path, tiny_model_dir, exported, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "1000")
    tiny = str(tiny_model_dir)
    gen_only = tmp_path / "gen.jsonl"
    gen_only.write_text(json.dumps(ROWS[5]) + "\n")
    check_only = tmp_path / "check.jsonl"
    check_only.write_text(json.dumps(ROWS[6]) + "\n")
    other_template = tmp_path / "other.yaml"
    config = yaml.safe_load(exported.yaml_path.read_text())
    config["task"], config["metadata"]["forgetless"]["template"] = "other_template", "0123456789abcdef"
    other_template.write_text(yaml.safe_dump(config))
    cases = {
        "unknown lm-eval task 'arc_eesy'": ["eval", tiny, "--suite", "lm-eval:arc_eesy"],
        "lm-eval task file not found": ["eval", tiny, "--suite", f"lm-eval:{tmp_path / 'nope.yaml'}"],
        "empty lm-eval task name": ["eval", tiny, "--suite", "lm-eval:a,,b"],
        "is loglikelihood_rolling": ["eval", tiny, "--suite", f"lm-eval:{_rolling_task(tmp_path)}"],
        "exported with another chat template": ["eval", tiny, "--suite", f"lm-eval:{other_template}"],
        "has no mc or gen items": ["export-lm-eval", str(check_only), str(tmp_path / "t"), "--model", tiny],
        "is not usable by lm-eval": ["export-lm-eval", str(gen_only), str(tmp_path / "t"), "--model", tiny, "--task", "a b"],
    }
    for expect, argv in cases.items():
        code, err = _run(monkeypatch, capsys, *argv, "--out", str(tmp_path / "r.json")) if argv[0] == "eval" \
            else _run(monkeypatch, capsys, *argv)
        assert code == 2 and expect in err and "Traceback" not in err, (argv, err)
        assert err.strip().count("\n") == 0, err
    assert not (tmp_path / "r.json").exists()
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # as if the extra were not installed
    code, err = _run(monkeypatch, capsys, "eval", tiny, "--suite", "lm-eval:arc_easy", "--out", str(tmp_path / "r.json"))
    assert code == 2 and "pip install 'forgetless[lm-eval]'" in err


def test_the_python_api_takes_lm_eval_suites_as_the_cli_does(exported, tiny, suite_file):
    """`forgetless.evaluate` with a native suite and an `lm-eval:` task: one result, the bridged items scored
    as `evaluate_lm_eval` scores them on their own."""
    import forgetless

    settings = EvalSettings(open_ended=False, batch_size=3)
    both = forgetless.evaluate(tiny, [str(suite_file), f"lm-eval:{exported.yaml_path}"], settings=settings)
    alone = evaluate_lm_eval(tiny, [str(exported.yaml_path)], batch_size=3)
    assert [s.name for s in both.suites] == ["probe", "lm-eval:forgetless_probe"]
    bridged = [it for it in both.items if it.suite == "lm-eval:forgetless_probe"]
    assert [(it.id, it.pred, it.logliks) for it in bridged] == [(it.id, it.pred, it.logliks) for it in alone.items]
