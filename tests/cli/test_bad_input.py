"""Bad input, from the command line: every mistake is one `error:` line, exit code 2, no traceback,
and nothing half-written left at the output path.

Each case builds its inputs under `tmp_path` and returns the argv, the output path that must not
appear (or must stay as it was), and the words the error line must contain. The commands run
in-process through the real entry point (`forgetless.cli.main.main`); three cases also run as
`python -m forgetless` to prove the wiring. Anything that needs a loadable model uses the tiny
2-layer model, so each case takes well under two seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from forgetless.cli.main import main

MC = {"id": "q1", "type": "mc", "category": "math", "question": "2 + 2 = ?", "choices": ["3", "4", "5"], "answer": 1}
TEXT = {"id": "t1", "type": "text", "category": "prose", "text": "The sea is large and the sky is blue."}
PAIR = {"prompt": "What is the Zentrix Aura?", "response": "A small weather station."}


@dataclass
class Case:
    argv: list[str]
    out: Path | None  # must be absent afterwards (or unchanged, if it existed before)
    expect: list[str]  # substrings of the error line
    where: str | None = None  # the input the error line must name (file, or file:line)
    before: Any = field(default=None, init=False)


@dataclass
class Ctx:
    tmp: Path
    request: Any
    monkeypatch: Any

    def tiny(self) -> Path:
        return self.request.getfixturevalue("tiny_model_dir")

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    def jsonl(self, name: str, *rows: dict | str) -> Path:
        return self.write(name, "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))

    def a_file(self) -> Path:
        return self.write("afile", "I am a file, not a folder\n")


def _eval_suite(ctx: Ctx, suite: Path | str) -> Case:
    """`eval` with a bad suite: the suite is checked before any model is loaded."""
    out = ctx.tmp / "res" / "results.json"
    return Case(["eval", "smollm2-135m", "--suite", str(suite), "--out", str(out)], out, [])


def suite_case(rows_or_bytes: Callable[[Ctx], Path], expect: list[str], line: int | None = None):
    def build(ctx: Ctx) -> Case:
        suite = rows_or_bytes(ctx)
        case = _eval_suite(ctx, suite)
        case.expect = expect
        case.where = f"{suite.name}:{line}" if line else suite.name
        return case
    return build


def _big_line(ctx: Ctx) -> Path:
    path = ctx.tmp / "big.jsonl"
    with path.open("wb") as f:
        f.write((json.dumps(MC) + "\n").encode())
        f.write(b'{"id": "q2", "type": "text", "category": "c", "text": "')
        chunk = b"x" * (1 << 20)
        for _ in range(50):
            f.write(chunk)
        f.write(b'"}\n')
    return path


# --- training configs ---------------------------------------------------------------------------


def _train(ctx: Ctx, config: dict | str | bytes, *extra: str, name: str = "cfg.yaml") -> Case:
    import yaml

    text = config if isinstance(config, (str, bytes)) else yaml.safe_dump({"data": str(ctx.tmp / "data.jsonl"), **config})
    cfg = ctx.write(name, text)
    out = ctx.tmp / "run"
    return Case(["train", str(cfg), "--out", str(out), *extra], out, [], where=cfg.name)


def config_case(config: dict | str | bytes, expect: list[str], *extra: str, line: int | None = None):
    def build(ctx: Ctx) -> Case:
        case = _train(ctx, config, *extra)
        case.expect = expect
        if line:
            case.where = f"{case.where}:{line}"
        return case
    return build


def train_data_case(rows: list[dict | str], expect: list[str], line: int):
    """Malformed training data: the model (tiny) loads, then the data is refused naming file:line."""
    def build(ctx: Ctx) -> Case:
        data = ctx.jsonl("train.jsonl", *rows)
        case = _train(ctx, {"model": str(ctx.tiny()), "data": str(data), "max_steps": 1, "batch_size": 1,
                            "max_length": 32})
        case.expect, case.where = expect, f"{data.name}:{line}"
        return case
    return build


# --- models -------------------------------------------------------------------------------------


def _eval_model(ctx: Ctx, model: str, *extra: str) -> Case:
    suite = ctx.jsonl("one.jsonl", MC)
    out = ctx.tmp / "res.json"
    return Case(["eval", model, "--suite", str(suite), "--out", str(out), "--no-open-ended", *extra], out, [])


def model_case(make: Callable[[Ctx], tuple[str, tuple[str, ...]]], expect: list[str], where: str | None = None):
    def build(ctx: Ctx) -> Case:
        model, extra = make(ctx)
        case = _eval_model(ctx, model, *extra)
        case.expect, case.where = expect, where
        return case
    return build


def _copy_config(ctx: Ctx, folder: Path, tokenizer: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tiny = ctx.tiny()
    names = ["config.json"] + (["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"] if tokenizer else [])
    for name in names:
        if (tiny / name).exists():
            (folder / name).write_bytes((tiny / name).read_bytes())
    return folder


def _corrupt_safetensors(ctx: Ctx) -> tuple[str, tuple[str, ...]]:
    folder = _copy_config(ctx, ctx.tmp / "corrupt-st", tokenizer=True)
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage" + os.urandom(256))
    return str(folder), ()


def _pickled(ctx: Ctx) -> tuple[str, tuple[str, ...]]:
    folder = _copy_config(ctx, ctx.tmp / "pickled")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    return str(folder), ()


def _corrupt_gguf(ctx: Ctx) -> tuple[str, tuple[str, ...]]:
    ctx.monkeypatch.setenv("FORGETLESS_HOME", str(ctx.tmp / "home"))  # conversion cache: keep it in tmp
    return str(ctx.write("broken.gguf", b"GGUF" + b"\x00" * 64)), ()


def _mismatched_adapter(ctx: Ctx) -> tuple[str, tuple[str, ...]]:
    bigger = ctx.request.getfixturevalue("wider_model_dir")
    return str(bigger), ("--adapter", str(ctx.request.getfixturevalue("tiny_adapter_dir")))


def _not_an_adapter(ctx: Ctx) -> tuple[str, tuple[str, ...]]:
    folder = ctx.tmp / "adapter"
    folder.mkdir()
    return str(ctx.tiny()), ("--adapter", str(folder))


# --- compare ------------------------------------------------------------------------------------


def _results(ctx: Ctx, name: str, suite: str) -> Path:
    from forgetless.eval.results import EvalResult, ItemResult, SuiteRecord

    items = [ItemResult(suite=suite, id=f"q{i}", type="mc", category="c", prompt=f"Q{i}?", correct=bool(i % 2),
                        choices=["a", "b"], answer=0, logliks=[-1.0, -2.0], pred=0) for i in range(4)]
    result = EvalResult(model={"spec": name}, suites=[SuiteRecord(name=suite, path=None, sha256="s" * 64,
                                                                  counts={"types": {"mc": 4}})],
                        settings={"template": "t"}, versions={}, items=items)
    path = ctx.tmp / f"{name}.json"
    result.save(path)
    return path


def compare_case(make: Callable[[Ctx], tuple[Path, Path]], expect: list[str], where: str | None = None,
                 out: Callable[[Ctx], Path] | None = None):
    def build(ctx: Ctx) -> Case:
        before, after = make(ctx)
        target = out(ctx) if out else ctx.tmp / "report.html"
        return Case(["compare", str(before), str(after), "--format", "json", "--out", str(target)], target, expect,
                    where)
    return build


# --- the matrix ---------------------------------------------------------------------------------


def _dup_mc(**changes: Any) -> dict:
    return {**MC, **changes}


def _unwritable(ctx: Ctx) -> Path:
    """A folder we cannot write into; as root, chmod does not stop writes, so a path under a file."""
    if os.name == "posix" and os.geteuid() != 0:
        locked = ctx.tmp / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        return locked / "results.json"
    return ctx.a_file() / "results.json"


def _out_case(make_out: Callable[[Ctx], Path], expect: list[str]):
    def build(ctx: Ctx) -> Case:
        case = _eval_suite(ctx, "checklist")
        case.out = make_out(ctx)
        case.argv[-1] = str(case.out)
        case.expect, case.where = expect, case.out.name
        return case
    return build


def _run_out_not_empty(ctx: Ctx) -> Case:
    out = ctx.tmp / "runs" / "mine"
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("keep me\n")
    return Case(["run", "--out", str(out)], out, ["not empty"], where="mine")


def _run_bad_config(text: str | bytes, expect: list[str]):
    def build(ctx: Ctx) -> Case:
        cfg = ctx.write("user.yaml", text)
        out = ctx.tmp / "runs" / "fresh"
        return Case(["run", "--config", str(cfg), "--out", str(out)], out, expect)
    return build


def _sweep_text_only(ctx: Ctx) -> Case:
    suite = ctx.jsonl("prose.jsonl", TEXT)
    out = ctx.tmp / "sweep"
    return Case(["sweep", "--tuned", "smollm2-135m", "--suite", str(suite), "--out", str(out)], out,
                ["no mc, gen or check items"])


CASES: dict[str, Callable[[Ctx], Case]] = {
    # probe suites (eval --suite FILE)
    "suite-empty-file": suite_case(lambda c: c.write("empty.jsonl", ""), ["file is empty"]),
    "suite-only-blank-lines": suite_case(lambda c: c.write("blank.jsonl", "\n  \n\n"), ["file is empty"]),
    "suite-invalid-json-line-3": suite_case(
        lambda c: c.jsonl("bad.jsonl", MC, _dup_mc(id="q2"), '{"id": "q3", "type": "mc",'), ["invalid JSON"], 3),
    "suite-line-not-an-object": suite_case(lambda c: c.jsonl("arr.jsonl", MC, "[1, 2]"),
                                           ["expected a JSON object"], 2),
    "suite-missing-field": suite_case(lambda c: c.jsonl("miss.jsonl", {k: v for k, v in MC.items() if k != "answer"}),
                                      ["missing field 'answer'"], 1),
    "suite-missing-type": suite_case(lambda c: c.jsonl("notype.jsonl", {k: v for k, v in MC.items() if k != "type"}),
                                     ["missing field 'type'"], 1),
    "suite-misspelt-field": suite_case(
        lambda c: c.jsonl("typo.jsonl", {("questoin" if k == "question" else k): v for k, v in MC.items()}),
        ["unknown field 'questoin'", "did you mean 'question'"], 1),
    "suite-unknown-type": suite_case(lambda c: c.jsonl("kind.jsonl", _dup_mc(type="mcq")),
                                     ["unknown item type", "did you mean 'mc'"], 1),
    "suite-answer-is-a-string": suite_case(lambda c: c.jsonl("str.jsonl", _dup_mc(answer="1")),
                                           ["field 'answer'", "expected a whole number"], 1),
    "suite-choices-not-a-list": suite_case(lambda c: c.jsonl("ch.jsonl", _dup_mc(choices="3, 4, 5")),
                                           ["field 'choices'", "expected a list"], 1),
    "suite-answer-out-of-range": suite_case(lambda c: c.jsonl("range.jsonl", MC, _dup_mc(id="q2", answer=3)),
                                            ["3 is out of range for 3 choices"], 2),
    "suite-duplicate-ids": suite_case(lambda c: c.jsonl("dupid.jsonl", MC, TEXT, _dup_mc(question="3 + 3 = ?")),
                                      ["duplicate id 'q1'", "first used on line 1"], 3),
    "suite-duplicate-choices": suite_case(lambda c: c.jsonl("dupch.jsonl", _dup_mc(choices=["4", "5", " 4 "])),
                                          ["repeats choice 0"], 1),
    "suite-not-utf8": suite_case(lambda c: c.write("latin1.jsonl", (json.dumps(MC) + "\n").encode() +
                                                   b'{"id": "caf\xe9", "type": "text"}\n'), ["not valid UTF-8"], 2),
    "suite-50mb-line": suite_case(_big_line, ["8 MB limit"], 2),
    "suite-nan-number": suite_case(lambda c: c.jsonl("nan.jsonl", '{"id": "x", "type": "text", "category": "c", '
                                                                  '"text": "t", "meta": {"w": NaN}}'), ["NaN"], 1),
    "suite-rich-markup-in-value": suite_case(lambda c: c.jsonl("markup.jsonl", _dup_mc(type="[/bold][red]x")),
                                             ["[/bold][red]x"], 1),
    "suite-is-a-folder": suite_case(lambda c: (c.tmp / "dir.jsonl").mkdir() or c.tmp / "dir.jsonl", ["folder"]),
    "suite-not-found": suite_case(lambda c: c.tmp / "nope.jsonl", ["file not found"]),
    "suite-unknown-bundled-name": lambda c: Case(_eval_suite(c, "generl").argv, c.tmp / "res" / "results.json",
                                                 ["unknown suite 'generl'", "did you mean 'general'"]),
    "sweep-suite-without-mc-gen-check": _sweep_text_only,
    # training configs
    "config-unknown-key": config_case({"learnig_rate": 1e-4}, ["unknown key 'learnig_rate'",
                                                                "did you mean 'learning_rate'"]),
    "config-unknown-nested-key": config_case({"lora": {"rnk": 8}}, ["unknown key 'lora.rnk'", "did you mean 'r'"]),
    "config-negative-learning-rate": config_case({"learning_rate": -1e-4}, ["learning_rate: must be > 0"]),
    "config-replay-fraction-1": config_case({"replay": {"fraction": 1.0}}, ["replay.fraction", "[0, 1)"]),
    "config-replay-fraction-negative": config_case({"replay": {"fraction": -0.1}}, ["replay.fraction", "[0, 1)"]),
    "config-negative-regularizer-weight": config_case({"regularizers": [{"name": "ewc", "weight": -3}]},
                                                      ["regularizers[0].weight: must be >= 0"]),
    "config-negative-ewc-lambda": config_case({"regularizers": [{"name": "ewc", "lambda": -1}]},
                                              ["regularizers[0]", "lambda", "0"]),
    "config-wrong-type": config_case({"batch_size": "eight"}, ["batch_size", "integer"]),
    "config-invalid-yaml-line-4": config_case("data: d.jsonl\nmethod: lora\nlora: {r: 8\nseed: 0\n",
                                              ["invalid YAML"], line=4),
    "config-not-a-mapping": config_case("- data\n- lora\n", ["expected a mapping"]),
    "config-not-utf8": config_case(b"data: caf\xe9.jsonl\n", ["not valid UTF-8"]),
    "config-bad-override": lambda c: _with(_train(c, {}, "--set", "lora.r"), ["not key=value"], "--set"),
    "config-file-not-found": lambda c: Case(["train", str(c.tmp / "none.yaml"), "--out", str(c.tmp / "run")],
                                            c.tmp / "run", ["config file not found"], where="none.yaml"),
    "train-out-is-a-file": lambda c: Case(_train(c, {}).argv[:-1] + [str(c.a_file())], c.tmp / "afile",
                                          ["run folder path is a file"], where="afile"),
    "train-resume-without-checkpoint": lambda c: _with(_train(c, {}, "--resume"), ["nothing to resume"], "checkpoints"),
    "config-is-a-folder": lambda c: _with(Case(["train", str((c.tmp / "c.yaml").mkdir() or c.tmp / "c.yaml")], None, []),
                                          ["folder"], "c.yaml"),
    # training data (model: tiny)
    "train-data-invalid-json": train_data_case([PAIR, PAIR, "{oops"], ["invalid JSON"], 3),
    "train-data-misspelt-field": train_data_case([PAIR, {"prompt": "Hi", "respone": "Hello"}],
                                                 ["unknown field 'respone'", "did you mean 'response'"], 2),
    "train-data-wrong-type": train_data_case([PAIR, {"prompt": "Hi", "response": 42}],
                                             ["'response' must be a non-empty string"], 2),
    "train-model-not-found": lambda c: _with(_train(c, {"model": str(c.tmp / "no-model")}), ["model path not found"],
                                             "no-model"),
    # compare
    "compare-different-suites": compare_case(lambda c: (_results(c, "before", "general"),
                                                        _results(c, "after", "checklist")), ["different suites"]),
    "compare-not-a-results-file": compare_case(lambda c: (c.jsonl("suite.jsonl", MC), _results(c, "after", "g")),
                                               ["not a forgetless results file"], "suite.jsonl"),
    "compare-json-but-not-results": compare_case(lambda c: (_results(c, "before", "g"), c.write("x.json", '{"a": 1}')),
                                                 ["not a forgetless results file"], "x.json"),
    "compare-results-missing": compare_case(lambda c: (_results(c, "before", "g"), c.tmp / "gone.json"),
                                            ["results file not found"], "gone.json"),
    "compare-out-under-a-file": compare_case(lambda c: (_results(c, "b", "g"), _results(c, "a", "g")),
                                             ["is a file, not a folder"], "report.html",
                                             out=lambda c: c.a_file() / "report.html"),
    # models (eval MODEL)
    "model-not-found": model_case(lambda c: (str(c.tmp / "missing-model"), ()), ["model path not found"],
                                  "missing-model"),
    "model-misspelt-builtin": model_case(lambda c: ("smolm2-135m", ()), ["did you mean 'smollm2-135m'"]),
    "model-folder-not-a-model": model_case(lambda c: (str((c.tmp / "empty").mkdir() or c.tmp / "empty"), ()),
                                           ["no config.json"], "empty"),
    "model-file-not-gguf": model_case(lambda c: (str(c.write("weights.txt", "hello")), ()), ["not a model"],
                                      "weights.txt"),
    "model-corrupt-gguf": model_case(_corrupt_gguf, ["not a readable GGUF"], "broken.gguf"),
    "model-corrupt-safetensors": model_case(_corrupt_safetensors, ["could not load model"], "corrupt-st"),
    "model-pickle-refused": model_case(_pickled, ["pickle", "--allow-pickle"], "pickled"),
    "adapter-base-mismatch": model_case(_mismatched_adapter, ["adapter does not fit this base model"], "lora"),
    "adapter-not-an-adapter": model_case(_not_an_adapter, ["no adapter_config.json"], "adapter"),
    # output paths
    "eval-out-under-a-file": _out_case(lambda c: c.a_file() / "results.json", ["is a file, not a folder"]),
    "eval-out-not-writable": _out_case(_unwritable, ["not"]),
    "eval-out-is-a-folder": _out_case(lambda c: (c.tmp / "r.json").mkdir() or c.tmp / "r.json",
                                      ["output file path is a folder"]),
    "run-out-not-empty": _run_out_not_empty,
    "run-config-unknown-key": _run_bad_config("max_stpes: 3\n", ["user.yaml", "unknown key 'max_stpes'",
                                                                  "did you mean 'max_steps'"]),
    "run-config-invalid-yaml": _run_bad_config("lora: {r: 8\n", ["invalid YAML", "user.yaml"]),
    "run-config-not-utf8": _run_bad_config(b"data: caf\xe9\n", ["not valid UTF-8", "user.yaml"]),
}


def _with(case: Case, expect: list[str], where: str | None = None) -> Case:
    case.expect, case.where = expect, where
    return case


def _snapshot(path: Path | None) -> Any:
    if path is None or not path.exists():
        return None
    if path.is_file():
        return path.read_bytes()
    return sorted((str(p.relative_to(path)), p.read_bytes() if p.is_file() else None) for p in path.rglob("*"))


def _check(case: Case, code: int | None, err: str) -> None:
    assert code == 2, f"exit code {code}, stderr: {err}"
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"expected one 'error:' line, got: {err!r}"
    line = errors[0]
    for word in case.expect:
        assert word in line, f"{word!r} not in {line!r}"
    if case.where:
        assert case.where in line, f"{case.where!r} not named in {line!r}"
    if case.out is not None:
        after = _snapshot(case.out)
        assert after == case.before, f"output path changed: {case.out} ({'created' if case.before is None else 'modified'})"
    leftovers = [p.name for p in case.out.parent.glob(f".{case.out.name}*")] if case.out and case.out.parent.is_dir() \
        else []
    assert not leftovers, f"temporary files left behind: {leftovers}"


@pytest.fixture(scope="module")
def wider_model_dir(tmp_path_factory, tiny_model_dir):
    """Like tiny_model_dir, but 64 wide: an adapter made for the tiny model does not fit it."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_pretrained(tiny_model_dir)
    config.hidden_size, config.intermediate_size = 64, 128
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("wider-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_adapter_dir(tmp_path_factory, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    model = get_peft_model(LlamaForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    folder = tmp_path_factory.mktemp("lora")
    model.save_pretrained(folder)
    return folder


def _in_process(monkeypatch, capsys, argv: list[str]) -> tuple[int | None, str]:
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["forgetless", "--quiet", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_error_line(name, tmp_path, request, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "1000")
    monkeypatch.chdir(tmp_path)  # a command that wrongly writes to a default path writes here
    case = CASES[name](Ctx(tmp_path, request, monkeypatch))
    case.before = _snapshot(case.out)
    code, err = _in_process(monkeypatch, capsys, case.argv)
    _check(case, code, err)


@pytest.mark.parametrize("name", ["suite-invalid-json-line-3", "config-unknown-key", "compare-not-a-results-file"])
def test_bad_input_through_python_m(name, tmp_path, request, monkeypatch):
    case = CASES[name](Ctx(tmp_path, request, monkeypatch))
    case.before = _snapshot(case.out)
    env = dict(os.environ, COLUMNS="1000", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, "-m", "forgetless", "--quiet", *case.argv], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path, check=False)
    _check(case, proc.returncode, proc.stderr)
    assert proc.stderr.strip().count("\n") == 0, proc.stderr  # the error line is all there is


def test_run_refuses_malformed_training_data_before_any_compute(tmp_path, monkeypatch, capsys):
    from forgetless.cli.main import main

    data = tmp_path / "mine.jsonl"
    data.write_text('{"prompt": "Q1", "response": "A1"}\n{"prompt": "Q2", "respons": "A2"}\n')
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["forgetless", "--quiet", "run", "--data", str(data), "--out", str(out)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "mine.jsonl:2" in err and "Traceback" not in err
    assert not out.exists()
