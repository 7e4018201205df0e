"""evaluate() end to end on the real model: a user's own suite, determinism, drift signals."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from forgetless.eval import EvalResult, EvalSettings, evaluate
from forgetless.suites import read_suite

SUITE = [
    {"id": "q1", "type": "mc", "category": "geo", "question": "What is the capital of France?",
     "choices": ["Berlin", "Paris", "Rome", "Madrid"], "answer": 1},
    {"id": "q2", "type": "mc", "category": "life", "question": "What colour is fresh grass?",
     "choices": ["Purple", "Orange", "Green"], "answer": 2},
    {"id": "g1", "type": "gen", "category": "geo", "prompt": "What is the capital of Italy? Answer in one word.",
     "answers": ["Rome"], "match": "contains"},
    {"id": "c1", "type": "check", "category": "format", "prompt": "Answer yes or no: is the sun a star?",
     "checks": [{"kind": "max_words", "n": 20}], "severity": "high"},
    {"id": "t1", "type": "text", "category": "prose", "text": "The river runs past the old mill and into the sea."},
    {"id": "t2", "type": "text", "category": "prose", "text": "Bread is made from flour, water, salt and yeast."},
]
FAST = EvalSettings(batch_size=4, max_new_tokens=12, check_max_new_tokens=24)


@pytest.fixture()
def user_suite(tmp_path):
    path = tmp_path / "my_suite.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in SUITE))
    return path


def test_user_suite_scores_every_item(smollm2, user_suite):
    result = evaluate(smollm2, [read_suite(user_suite)], settings=FAST)
    items = result.by_key()
    assert [it.id for it in result.items] == [row["id"] for row in SUITE]
    assert items["my_suite/q1"].correct is True and "Paris" in items["my_suite/q1"].reply
    assert items["my_suite/q1"].open_correct is True
    assert items["my_suite/g1"].correct is True
    assert items["my_suite/c1"].checks[0].kind == "max_words"
    assert items["my_suite/t1"].nll > 0 and items["my_suite/t1"].kl is None
    overall = result.summary["my_suite"]["overall"]
    assert overall["mc_acc"] == 1.0 and overall["perplexity"] > 1
    assert result.settings["template"] and result.suites[0].sha256


def test_two_runs_give_identical_results_apart_from_timings(smollm2, user_suite, tmp_path):
    a = evaluate(smollm2, [read_suite(user_suite)], settings=FAST)
    b = evaluate(smollm2, [read_suite(user_suite)], settings=EvalSettings(**{**FAST.__dict__, "batch_size": 1}))
    a.save(tmp_path / "a.json")
    loaded = EvalResult.load(tmp_path / "a.json")
    for r in (a, b, loaded):
        r.timings = {}
    assert [it.model_dump() for it in a.items] == [it.model_dump() for it in loaded.items]
    assert [(it.pred, it.reply, it.correct) for it in a.items] == [(it.pred, it.reply, it.correct) for it in b.items]


def test_kl_against_the_adapters_own_base_is_zero_until_it_moves(smollm2, user_suite):
    import copy

    from peft import LoraConfig, get_peft_model

    from forgetless.models.loading import LoadedModel

    torch.manual_seed(0)
    peft_model = get_peft_model(copy.deepcopy(smollm2.model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    wrapped = LoadedModel(model=peft_model, tokenizer=smollm2.tokenizer, spec="lora", source="test", path="-")
    suite = read_suite(user_suite)
    settings = EvalSettings(open_ended=False, max_new_tokens=4, check_max_new_tokens=4)
    zero = evaluate(wrapped, [suite], reference="base", settings=settings)
    assert all(it.kl == pytest.approx(0.0, abs=1e-6) for it in zero.items if it.type == "text")
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05 * torch.randn_like(p))
    moved = evaluate(wrapped, [suite], reference="base", settings=settings)
    assert all(it.kl > 1e-4 for it in moved.items if it.type == "text")
    assert moved.reference == {"spec": "base (adapter disabled)"}


def test_cli_eval_writes_results_for_a_users_suite(user_suite, tmp_path):
    out = tmp_path / "out" / "results.json"
    run = subprocess.run([sys.executable, "-m", "forgetless", "--quiet", "eval", "smollm2-135m", "--suite",
                          str(user_suite), "--out", str(out), "--max-new-tokens", "8", "--json"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout)
    assert printed["summary"]["my_suite"]["overall"]["n"] == len(SUITE)
    assert EvalResult.load(out).items[0].id == "q1"


def test_cli_eval_refuses_a_suite_without_usable_items(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "type": "mc", "category": "x", "question": "Q?", "choices": ["a", "b"], "answer": 2}\n')
    run = subprocess.run([sys.executable, "-m", "forgetless", "--quiet", "eval", "smollm2-135m", "--suite", str(bad),
                          "--out", str(tmp_path / "r.json")], capture_output=True, text=True)
    assert run.returncode == 2 and "bad.jsonl:1" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "r.json").exists()


def test_an_answer_prefix_leads_the_scored_choices_but_not_the_open_reply(smollm2, tmp_path):
    """The choices are scored after the item's opening words (a space between them), exactly as a full forward
    over that text scores them; the open reply is the model's own, asked without them."""
    from forgetless.eval.loglik import score_multiple_choice_bruteforce
    from forgetless.eval.prompts import render_prompt

    row = {**SUITE[0], "answer_prefix": "The capital of France is "}
    path = tmp_path / "led.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps(SUITE[0] | {"id": "q0"}) + "\n")
    result = evaluate(smollm2, [read_suite(path)], settings=FAST)
    led, bare = result.by_key()["led/q1"], result.by_key()["led/q0"]
    tok = smollm2.tokenizer
    assert led.prompt == render_prompt(tok, row["question"]) + "The capital of France is"
    ref = score_multiple_choice_bruteforce(smollm2.model, tok, [led.prompt], [row["choices"]], after_words=True)[0]
    assert led.logliks == pytest.approx(ref.logliks, abs=1e-4)
    assert led.reply == bare.reply and "Paris" in led.reply  # the reply does not start from the prefix
    # the words make the right choice far likelier than right after the assistant header
    assert led.logliks[1] > bare.logliks[1] + 1 and led.pred == 1


def test_without_open_replies_a_prefixed_item_is_scored_once_and_the_same(smollm2, tmp_path):
    path = tmp_path / "led.jsonl"
    rows = [{**SUITE[0], "answer_prefix": "The capital of France is"}, SUITE[1]]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    asked = evaluate(smollm2, [read_suite(path)], settings=FAST).items
    closed_settings = EvalSettings(**{**FAST.__dict__, "open_ended": False})
    closed = evaluate(smollm2, [read_suite(path)], settings=closed_settings).items
    for a, c in zip(asked, closed):
        assert c.prompt == a.prompt and c.reply is None and c.logliks == pytest.approx(a.logliks, abs=1e-4)
