"""lm-eval `generate_until` tasks through the bridge, on the real SmolLM2: a local task that reuses the installed
lm-eval's GSM8K configuration (its prompt, stop strings, filters and exact_match settings) over arithmetic
questions written here. Each item's outcome and reply equal `lm_eval.simple_evaluate`'s own samples, the
accuracy equals lm-eval's reported metric, and `compare` pairs the items as behaviour. A suite's gen items
exported as a generate_until task score in lm-eval as `forgetless eval` scores them. lm-eval's own IFEval
task, over prompts written here, gives through the bridge the replies, outcomes and per-instruction checks of
`simple_evaluate` with the chat template.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

lm_eval = pytest.importorskip("lm_eval")

from forgetless.compare import compare  # noqa: E402
from forgetless.errors import ForgetlessError  # noqa: E402
from forgetless.eval import EvalSettings, evaluate  # noqa: E402
from forgetless.integrations.lm_eval import evaluate_lm_eval, export_suite, load_tasks  # noqa: E402
from forgetless.io import resolve_data_path  # noqa: E402
from forgetless.models import load_model  # noqa: E402
from forgetless.suites import read_suite  # noqa: E402

SUMS = [(a, b) for a in (1, 2, 3, 4, 5) for b in (1, 2, 3, 4)]  # 20 questions a small model often gets right
SHOTS = [(6, 3), (7, 2), (8, 1)]


def _rows(pairs: list[tuple[int, int]]) -> str:
    return "".join(json.dumps({"question": f"What is {a} plus {b}?",
                               "answer": f"{a} plus {b} is {a + b}.\n#### {a + b}"}) + "\n" for a, b in pairs)


@pytest.fixture(scope="module")
def gsm8k_like(tmp_path_factory) -> Path:
    """GSM8K's own task file, included, with the data swapped for local files and short replies."""
    folder = tmp_path_factory.mktemp("gen-task")
    (folder / "test.jsonl").write_text(_rows(SUMS))
    (folder / "train.jsonl").write_text(_rows(SHOTS))
    gsm8k = Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml"
    path = folder / "sums.yaml"
    path.write_text(yaml.safe_dump({
        "include": str(gsm8k), "task": "sums", "tag": [], "dataset_path": "json", "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(folder / "test.jsonl"), "train": str(folder / "train.jsonl")}},
        "num_fewshot": 3,
        "generation_kwargs": {"until": ["Question:", "</s>", "<|im_end|>"], "do_sample": False, "temperature": 0.0,
                              "max_gen_toks": 24}}))
    return path


@pytest.fixture(scope="module")
def bridged(smollm2, gsm8k_like):
    return evaluate_lm_eval(smollm2, [str(gsm8k_like)], batch_size=8)


def test_generative_items_equal_lm_evals_own_samples(smollm2, gsm8k_like, bridged):
    """Replies come from forgetless's decoder here; lm-eval's own HFLM loop must give the same ones."""
    from lm_eval.models.huggingface import HFLM

    tasks = load_tasks([str(gsm8k_like)])
    own = lm_eval.simple_evaluate(model=HFLM(pretrained=smollm2.model, tokenizer=smollm2.tokenizer, batch_size=8),
                                  tasks=["sums"], task_manager=tasks.manager, log_samples=True, bootstrap_iters=0)
    strict = sorted((s for s in own["samples"]["sums"] if s["filter"] == "strict-match"), key=lambda s: s["doc_id"])
    flexible = {s["doc_id"]: s for s in own["samples"]["sums"] if s["filter"] == "flexible-extract"}
    items = bridged.items
    assert bridged.settings["lm_eval"]["generated_by"] == {"forgetless": 20, "lm-eval": 0}  # the bridge's decoder
    assert [s.name for s in bridged.suites] == ["lm-eval:sums"] and bridged.suites[0].counts["types"]["gen"] == 20
    assert [it.id for it in items] == [str(s["doc_id"]) for s in strict]
    for it, s in zip(items, strict):
        assert it.type == "gen" and it.reply == s["resps"][0][0] and it.prompt == s["arguments"][0][0]
        assert it.correct == bool(s["exact_match"])
        checks = {c.describe: c.passed for c in it.checks}
        assert checks == {"exact_match after strict-match": bool(s["exact_match"]),
                          "exact_match after flexible-extract": bool(flexible[s["doc_id"]]["exact_match"])}
    accuracy = sum(it.correct for it in items) / len(items)
    assert accuracy == pytest.approx(own["results"]["sums"]["exact_match,strict-match"])
    assert 0.3 <= accuracy  # the few-shot format is followed, so the items can be lost


def test_generative_items_pair_in_compare_as_behaviour(bridged, tiny_model_dir, gsm8k_like):
    """A random model loses the items SmolLM2 answered: paired, significant, and the gate fires."""
    lost = evaluate_lm_eval(load_model(str(tiny_model_dir), device="cpu"), [str(gsm8k_like)], batch_size=8)
    report = compare(bridged, lost)
    behaviour = report.metric("behaviour")
    assert behaviour is not None and behaviour.overall.n == 20
    assert behaviour.overall.before == pytest.approx(sum(it.correct for it in bridged.items) / 20)
    assert behaviour.overall.after == 0.0
    assert report.forgetting
    assert compare(bridged, bridged).verdict != "forgetting"


def test_cli_limit_scores_the_first_documents(tiny_model_dir, gsm8k_like, tmp_path, monkeypatch):
    import sys

    from forgetless.cli.main import main
    from forgetless.eval.results import EvalResult

    out = tmp_path / "r.json"
    monkeypatch.setattr(sys, "argv", ["forgetless", "--quiet", "eval", str(tiny_model_dir), "--suite",
                                      f"lm-eval:{gsm8k_like}", "--limit", "5", "--out", str(out)])
    with pytest.raises(SystemExit) as done:
        main()
    assert (done.value.code or 0) == 0
    result = EvalResult.load(out)
    assert [it.id for it in result.items] == ["0", "1", "2", "3", "4"] and {it.type for it in result.items} == {"gen"}
    assert result.settings["lm_eval"]["limit"] == 5


def test_a_group_of_mc_and_generative_tasks_gives_a_suite_per_task(tiny_model_dir, gsm8k_like):
    folder = gsm8k_like.parent
    (folder / "mc.jsonl").write_text(json.dumps({"q": "2 + 2 =", "choices": ["3", "4"], "a": 1}) + "\n")
    (folder / "mc.yaml").write_text(yaml.safe_dump({
        "task": "tiny_mc", "dataset_path": "json", "test_split": "test", "output_type": "multiple_choice",
        "dataset_kwargs": {"data_files": {"test": str(folder / "mc.jsonl")}},
        "doc_to_text": "q", "doc_to_choice": "choices", "doc_to_target": "a", "metric_list": [{"metric": "acc"}]}))
    (folder / "mixed.yaml").write_text(yaml.safe_dump({"group": "mixed", "task": ["tiny_mc", "sums"]}))
    result = evaluate_lm_eval(load_model(str(tiny_model_dir), device="cpu"), [str(folder / "mixed.yaml")],
                              batch_size=8, limit=2)
    assert [s.name for s in result.suites] == ["lm-eval:tiny_mc", "lm-eval:sums"]
    assert [(it.suite, it.id, it.type) for it in result.items] == [
        ("lm-eval:tiny_mc", "0", "mc"), ("lm-eval:sums", "0", "gen"), ("lm-eval:sums", "1", "gen")]


def test_exported_gen_items_score_in_lm_eval_as_forgetless_eval_scores_them(smollm2, tmp_path):
    """The round trip: 24 gen items of the bundled general suite, exported as a generate_until task (scored by
    the `forgetless_match.py` written beside it), give in lm-eval the replies and outcomes `forgetless eval` gives."""
    lines = resolve_data_path("builtin:suites/general.jsonl").read_text().splitlines()
    gen = [line for line in lines if '"answers"' in line][:24]
    (tmp_path / "probe.jsonl").write_text("\n".join(gen) + "\n")
    suite = read_suite(tmp_path / "probe.jsonl")
    exported = export_suite(suite, smollm2.tokenizer, tmp_path / "tasks", kind="gen")
    assert exported.task == "forgetless_probe_gen" and exported.n_items == 24
    native = evaluate(smollm2, [suite], settings=EvalSettings(open_ended=False, batch_size=8))
    bridged = evaluate_lm_eval(smollm2, [str(exported.yaml_path)], batch_size=8)
    assert [(it.id, it.category, it.prompt, it.reply.strip(), it.correct) for it in bridged.items] == \
        [(it.id, it.category, it.prompt, it.reply, it.correct) for it in native.items]
    assert 6 <= sum(it.correct for it in native.items) <= 20  # both outcomes occur, so a mismatch would show


def test_requests_the_decoder_cannot_reproduce_go_to_lm_evals_loop(tiny_model_dir, gsm8k_like):
    """A generation setting forgetless's decoder does not take (here `top_k`) sends the request to lm-eval."""
    config = yaml.safe_load(gsm8k_like.read_text())
    config["task"], config["generation_kwargs"]["top_k"] = "sums_top_k", 1
    path = gsm8k_like.parent / "sums_top_k.yaml"
    path.write_text(yaml.safe_dump(config))
    result = evaluate_lm_eval(load_model(str(tiny_model_dir), device="cpu"), [str(path)], batch_size=8, limit=4)
    assert result.settings["lm_eval"]["generated_by"] == {"forgetless": 0, "lm-eval": 4}
    assert len(result.items) == 4 and all(it.type == "gen" for it in result.items)


# IFEval documents written here, one or two instructions each, none that needs NLTK's punkt data.
IFEVAL_DOCS = [
    ("Name three fruits without using any commas.", [("punctuation:no_comma", {})]),
    ("Describe the sea in at least 12 words.", [("length_constraints:number_words",
                                                 {"num_words": 12, "relation": "at least"})]),
    ("Write a short greeting in all lowercase letters.", [("change_case:english_lowercase", {})]),
    ("Wrap your whole reply in double quotation marks: say hello.", [("startend:quotation", {})]),
    ("Give a title in double angular brackets, like <<title>>, then one line about rain.",
     [("detectable_format:title", {})]),
    ("Reply in JSON: an object with the key \"color\" and a color as value.", [("detectable_format:json_format", {})]),
    ("Mention the words river and stone in one sentence.", [("keywords:existence", {"keywords": ["river", "stone"]})]),
    ("Say what a cat is, in fewer than 20 words, and end with the phrase \"That is all.\"",
     [("length_constraints:number_words", {"num_words": 20, "relation": "less than"}),
      ("startend:end_checker", {"end_phrase": "That is all."})]),
]


@pytest.fixture(scope="module")
def ifeval_like(tmp_path_factory) -> Path:
    """lm-eval's own IFEval task file, included (its prompt, generation settings and `process_results`), over
    the documents above, with replies cut at 48 tokens."""
    pytest.importorskip("langdetect")
    pytest.importorskip("immutabledict")
    folder = tmp_path_factory.mktemp("ifeval-task")
    rows = [{"key": i, "prompt": prompt, "instruction_id_list": [name for name, _ in checks],
             "kwargs": [kwargs for _, kwargs in checks]} for i, (prompt, checks) in enumerate(IFEVAL_DOCS)]
    (folder / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    path = folder / "ifeval_local.yaml"
    path.write_text(yaml.safe_dump({
        "include": str(Path(lm_eval.__file__).parent / "tasks" / "ifeval" / "ifeval.yaml"), "task": "ifeval_local",
        "dataset_path": "json", "dataset_name": None,
        "dataset_kwargs": {"data_files": {"train": str(folder / "train.jsonl")}},
        "generation_kwargs": {"until": [], "do_sample": False, "temperature": 0.0, "max_gen_toks": 48}}))
    return path


def test_ifeval_items_equal_lm_evals_own_samples(smollm2, ifeval_like):
    """Prompt-level strict accuracy is the item's outcome; each instruction, strict and loose, is a check; all
    equal `lm_eval.simple_evaluate`'s samples, and the accuracy equals its reported metric."""
    from lm_eval.models.huggingface import HFLM

    from forgetless.suites import ifeval

    ifeval.ifeval_utils()  # the module lm-eval imports, loaded without NLTK's download call
    bridged = evaluate_lm_eval(smollm2, [str(ifeval_like)], batch_size=8, apply_chat_template=True)
    own = lm_eval.simple_evaluate(model=HFLM(pretrained=smollm2.model, tokenizer=smollm2.tokenizer, batch_size=8),
                                  tasks=["ifeval_local"], task_manager=load_tasks([str(ifeval_like)]).manager,
                                  log_samples=True, bootstrap_iters=0, apply_chat_template=True)
    samples = sorted(own["samples"]["ifeval_local"], key=lambda s: s["doc_id"])
    assert bridged.settings["lm_eval"]["generated_by"] == {"forgetless": 8, "lm-eval": 0}
    assert len(bridged.items) == len(samples) == 8
    for it, s in zip(bridged.items, samples):
        assert it.type == "gen" and it.reply == s["resps"][0][0] and it.prompt == s["arguments"][0][0]
        assert it.correct == s["prompt_level_strict_acc"]
        names = s["doc"]["instruction_id_list"]
        assert {c.kind: c.passed for c in it.checks} == {
            "prompt_level_strict_acc": s["prompt_level_strict_acc"],
            "prompt_level_loose_acc": s["prompt_level_loose_acc"],
            **{f"inst_level_strict_acc:{n}": v for n, v in zip(names, s["inst_level_strict_acc"])},
            **{f"inst_level_loose_acc:{n}": v for n, v in zip(names, s["inst_level_loose_acc"])}}
    accuracy = sum(it.correct for it in bridged.items) / 8
    assert accuracy == pytest.approx(own["results"]["ifeval_local"]["prompt_level_strict_acc,none"])
    assert 0 < accuracy < 1  # both outcomes occur, so a mismatch would show


def test_the_chat_template_setting_is_recorded_and_results_with_another_are_not_paired(tiny_model_dir, gsm8k_like):
    model = load_model(str(tiny_model_dir), device="cpu")
    plain = evaluate_lm_eval(model, [str(gsm8k_like)], batch_size=8, limit=2)
    chat = evaluate(model, [load_tasks([str(gsm8k_like)])],
                    settings=EvalSettings(batch_size=8, lm_eval_limit=2, lm_eval_chat_template=True))
    assert (plain.settings["lm_eval"]["apply_chat_template"], chat.settings["lm_eval"]["apply_chat_template"]) == \
        (False, True)
    assert chat.items[0].prompt.startswith("<|im_start|>") and not plain.items[0].prompt.startswith("<|im_start|>")
    with pytest.raises(ForgetlessError, match="suite 'lm-eval:sums' changed between the two results"):
        compare(plain, chat)
