"""Replay: exact share of the mix, deterministic sampling and shuffling, self-replay generated once."""

from __future__ import annotations

import json
import re

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from forgetless.models.loading import resolve
from forgetless.suites.loader import list_bundled_suites, load_suite
from forgetless.train import replay
from forgetless.train.data import read_records, tokenize_records


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve("smollm2-135m")[0])


@pytest.fixture()
def general(tmp_path, monkeypatch):
    """A stand-in for the bundled general set (the real one may not be written yet)."""
    path = tmp_path / "general.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Question {i}?", "response": f"Answer {i}."}) + "\n"
                            for i in range(10)))
    monkeypatch.setattr(replay, "bundled_replay_path", lambda: path)
    monkeypatch.setenv("FORGETLESS_HOME", str(tmp_path / "home"))
    return path


@pytest.mark.parametrize("n, fraction, expected", [(100, 0.0, 0), (100, 0.25, 33), (100, 0.5, 100),
                                                   (3, 0.25, 1), (8, 0.5, 8)])
def test_replay_is_an_exact_share_of_the_mix(n, fraction, expected):
    k = replay.replay_count(n, fraction)
    assert k == expected
    if k:
        assert abs(k / (n + k) - fraction) <= 0.5 / (n + k) + 1e-9  # as close as whole examples allow


def test_sampling_is_deterministic_and_repeats_only_when_needed():
    items = list(range(10))
    assert replay.sample(items, 6, seed=1) == replay.sample(items, 6, seed=1)
    assert replay.sample(items, 6, seed=1) != replay.sample(items, 6, seed=2)
    assert len(set(replay.sample(items, 10, seed=0))) == 10  # no repeats when the source suffices
    counts = [replay.sample(items, 25, seed=0).count(i) for i in items]
    assert sorted(set(counts)) == [2, 3]  # each used floor or ceil of 25/10 times


def test_mix_is_a_seeded_shuffle():
    domain, extra = list(range(8)), ["r1", "r2"]
    assert replay.mix(domain, extra, 3) == replay.mix(domain, extra, 3)
    assert sorted(map(str, replay.mix(domain, extra, 3))) == sorted(map(str, domain + extra))
    assert replay.mix(domain, extra, 3) != replay.mix(domain, extra, 4)


def test_bundled_and_file_sources(general):
    assert len(replay.replay_records("bundled")) == 10
    assert len(replay.replay_records(str(general))) == 10


def test_self_replay_is_generated_once_and_cached(general, tokenizer, monkeypatch):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=1)
    model = LlamaForCausalLM(config).eval()
    calls = []
    real_generate = replay._generate

    def counting(*args, **kwargs):
        calls.append(args[2])
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(replay, "_generate", counting)
    kwargs = dict(model=model, tokenizer=tokenizer, model_path="/models/tiny", num_prompts=4, max_new_tokens=6)
    first = replay.replay_records("self", **kwargs)
    second = replay.replay_records("self", **kwargs)
    assert len(calls) == 1 and calls[0] == [f"Question {i}?" for i in range(4)]
    assert [r.data for r in first] == [r.data for r in second]
    assert all(r.format == "prompt_response" for r in first)
    cache = replay.self_replay_cache_path("/models/tiny", calls[0], 6)
    assert cache.exists() and cache.parent == general.parent / "home" / "replay"
    replay.replay_records("self", **{**kwargs, "max_new_tokens": 7})  # other settings: a new cache entry
    assert len(calls) == 2
    assert tokenizer.padding_side == "right"  # restored after left-padded generation


def test_user_replay_file_may_use_any_format(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"text": "general text"}) + "\n")
    assert read_records(path)[0].format == "text"
    assert replay.replay_records(str(path))[0].data["text"] == "general text"


# --- answers cut off by the token limit, and loops ------------------------------------------------------------

LOOP = " ".join(["**To Do List Template:** - Task - Due date"] * 6)


@pytest.mark.parametrize("text, finished, expected", [
    ("Paris is the capital of France.", True, ("Paris is the capital of France.", True)),
    ("Paris is the capital and largest city of France. It is known for the Eiffel Tower and", False,
     ("Paris is the capital and largest city of France.", False)),
    ('Water boils at 100 degrees Celsius at sea level "in most kitchens." Above that, the', False,
     ('Water boils at 100 degrees Celsius at sea level "in most kitchens."', False)),
    ("Here are three tips for sleeping well:\n1. Keep a fixed bedtime every day\n2. Avoid", False,
     ("Here are three tips for sleeping well:\n1. Keep a fixed bedtime every day", False)),
    ("Short. And then it went on and on without", False, None),  # too little left before the last end
    ("A single unfinished sentence that never reaches its end because the limit", False, None),
    (LOOP, True, None),
    ("   ", True, None),
])
def test_replay_answer_rule(text, finished, expected):
    assert replay.replay_answer(text, finished) == expected


def test_self_replay_keeps_finished_answers_cuts_others_and_drops_loops(general, tokenizer):
    prompts = replay.general_prompts(4)
    cache = replay.self_replay_cache_path("/models/tiny", prompts, 8)
    cache.parent.mkdir(parents=True)
    rows = [("It is four.", True), ("The sky looks blue because air scatters blue light most. At sunset the", False),
            (LOOP, False), ("", True)]
    cache.write_text("".join(json.dumps({"prompt": p, "response": r, "finished": f}) + "\n"
                             for p, (r, f) in zip(prompts, rows)))
    records = replay.self_replay(None, tokenizer, model_path="/models/tiny", prompts=prompts, max_new_tokens=8)
    assert [(r.data["response"], r.open_end) for r in records] == [
        ("It is four.", False), ("The sky looks blue because air scatters blue light most.", True)]
    tokenized = tokenize_records(records, tokenizer, 256).examples
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    finished, cut = ([t for t, lab in zip(e["input_ids"], e["labels"]) if lab != -100] for e in tokenized)
    assert finished[-1] == end  # the model's own end is learned ...
    assert end not in cut and end in tokenized[1]["input_ids"]  # ... a cut-off one is seen but not learned
    assert tokenizer.decode(cut) == "The sky looks blue because air scatters blue light most."


@pytest.mark.parametrize("k", [0, 1, 5, 7, 8, 15, 23])
def test_a_smaller_draw_is_the_start_of_a_larger_one(k):
    """So a run cut to fewer steps (a time budget) rehearses exactly what a run of that many steps would."""
    items = list(range(8))
    larger = replay.sample(items, 40, seed=3)
    assert replay.sample(items, k, seed=3) == larger[:k]
    assert all(sorted(larger[i:i + 8]) == items for i in range(0, 40, 8))  # whole shuffles: repeats only past 8


STOP_WORDS = set("what is the a an of in which who how many does do are for to by with and on from that was did "
                 "most called we you word our".split())


def _content_words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower())) - STOP_WORDS


def test_bundled_replay_asks_nothing_the_probe_suites_ask():
    """Replay holds the model to the base's answers: a probe question in it would be rehearsed, not measured.

    A replay prompt whose content words are three quarters or more of one probe question's is a copy
    ("Which river flows through Paris?"); sharing the form is fine ("What is the capital of Canada?").
    """
    probes = [(name, item.question if item.type == "mc" else item.prompt) for name in list_bundled_suites()
              for item in load_suite(name).items if item.type in ("mc", "gen", "check")]
    prompts = replay.general_prompts()
    assert len(prompts) == len(set(prompts)) > 200
    copies = []
    for prompt in prompts:
        words = _content_words(prompt)
        for name, question in probes:
            if len(words) >= 2 and len(words & _content_words(question)) >= 0.75 * len(words):
                copies.append(f"{prompt!r} ~ {name}: {question!r}")
    assert copies == []
