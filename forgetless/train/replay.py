"""Replay: mix general examples into the training stream so the model keeps rehearsing them.

The fraction is a share of the MIX: with n domain examples and fraction f,

    k = round(n * f / (1 - f))   replay examples,  so that  k / (n + k) ~= f.

(Some tutorials instead add f * n replay examples, a fraction of the domain set's size; at
f = 0.5 that gives a third of the mix, not half.)

Sources: the bundled general prompt/response pairs, a user JSONL file, or "self" — the base
model's own greedy answers to the bundled prompts. Self-replay keeps the model close to its own
output distribution (no style shift towards someone else's answers); the answers are generated
once per model and cached under the forgetless home.

Sampling is deterministic for a seed: without replacement when the source is large enough,
otherwise whole shuffled passes over the source plus a partial one (each example used
floor(k/m) or ceil(k/m) times — repetition only where unavoidable).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

from forgetless.errors import ForgetlessError
from forgetless.home import forgetless_home
from forgetless.io import read_jsonl, resolve_data_path, write_jsonl
from forgetless.train.data import Record, read_records

T = TypeVar("T")
GENERATION_BATCH = 16


def bundled_replay_path() -> Path:
    return Path(str(files("forgetless") / "data" / "replay" / "general.jsonl"))


def replay_count(n_domain: int, fraction: float) -> int:
    """Replay examples to add so that they make up `fraction` of the mix."""
    if not 0 <= fraction < 1:
        raise ForgetlessError(f"replay fraction must be in [0, 1), got {fraction}")
    return round(n_domain * fraction / (1 - fraction))


def sample(items: list[T], k: int, seed: int) -> list[T]:
    """k items drawn deterministically for `seed`, the draw for k the start of the draw for any larger k;
    repeats only when k > len(items)."""
    if k == 0:
        return []
    if not items:
        raise ForgetlessError("the replay source has no examples")
    rng = random.Random(seed)
    out: list[T] = []
    while len(out) < k:  # whole shuffles, so the draw for k is the start of the draw for any larger k
        cycle = list(items)
        rng.shuffle(cycle)
        out += cycle[:k - len(out)]
    return out


def mix(domain: list[T], replay: list[T], seed: int) -> list[T]:
    """Domain and replay examples in one stream, shuffled with a seeded generator."""
    stream = list(domain) + list(replay)
    random.Random(seed).shuffle(stream)
    return stream


# --- sources ------------------------------------------------------------------------------------


def replay_records(source: str, *, model: Any = None, tokenizer: Any = None, model_path: str | None = None,
                   num_prompts: int | None = None, max_new_tokens: int = 96) -> list[Record]:
    """All examples of a replay source ("bundled", "self" or a JSONL path)."""
    if source == "bundled":
        return read_records(_bundled_or_fail())
    if source == "self":
        if model is None or tokenizer is None:
            raise ForgetlessError("self-replay needs the base model")
        return self_replay(model, tokenizer, model_path=model_path or "", num_prompts=num_prompts,
                           max_new_tokens=max_new_tokens)
    path = resolve_data_path(source)
    if not path.exists():
        raise ForgetlessError("replay source not found", where=path,
                              hint="replay.source is 'bundled', 'self' or the path of a JSONL file")
    return read_records(path)


def _bundled_or_fail() -> Path:
    path = bundled_replay_path()
    if not path.exists():
        raise ForgetlessError("the bundled replay set is missing from this installation", where=path,
                              hint="reinstall forgetless, or set replay.source to a JSONL file of your own")
    return path


def general_prompts(num_prompts: int | None = None) -> list[str]:
    """Prompts of the bundled replay set (its user turns), in file order."""
    prompts = []
    for record in read_records(_bundled_or_fail()):
        if record.format == "prompt_response":
            prompts.append(record.data["prompt"])
        elif record.format == "messages":
            prompts.append(next(m["content"] for m in record.data["messages"] if m["role"] == "user"))
    return prompts[:num_prompts] if num_prompts else prompts


def self_replay(model: Any, tokenizer: Any, *, model_path: str, prompts: list[str] | None = None,
                num_prompts: int | None = None, max_new_tokens: int = 96) -> list[Record]:
    """The base model's greedy answers to general prompts, cached per model, prompts and settings.

    Each answer passes `replay_answer`: a loop is dropped, and one cut off by `max_new_tokens` keeps
    its complete sentences with its end left unlabelled (`Record.open_end`), so that replay never
    teaches the model to stop mid-sentence.
    """
    prompts = prompts if prompts is not None else general_prompts(num_prompts)
    cache = self_replay_cache_path(model_path, prompts, max_new_tokens)
    if not cache.exists():
        answers = _generate(model, tokenizer, prompts, max_new_tokens)
        write_jsonl(cache, [{"prompt": p, "response": a, "finished": done} for p, (a, done) in zip(prompts, answers)])
    records = []
    for lineno, obj in read_jsonl(cache):
        kept = replay_answer(obj.get("response", ""), bool(obj.get("finished")))
        if kept is not None:
            text, complete = kept
            records.append(Record("prompt_response", {"prompt": obj["prompt"], "response": text},
                                  f"{cache}:{lineno}", open_end=not complete))
    return records


SENTENCE_END = re.compile(r"[.!?][\"')\]*]*(?=\s|$)|\n")  # where a cut-off answer may end: a sentence or a line
LIST_MARKER = re.compile(r"\s*\d+\.")  # "2." opening a list item ends no sentence
MIN_KEPT_CHARS = 40  # a cut-off answer with less than this left before its last sentence end is dropped
MIN_DISTINCT_TRIGRAMS = 0.5  # below this share of distinct word 3-grams an answer is a loop


def is_degenerate(text: str) -> bool:
    """A loop: the same phrase again and again ('**To Do List Template:** ...' repeated)."""
    words = text.lower().split()
    grams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
    return len(grams) >= 12 and len(set(grams)) / len(grams) < MIN_DISTINCT_TRIGRAMS


def replay_answer(text: str, finished: bool) -> tuple[str, bool] | None:
    """(answer to train on, whether its end is the model's own) or None to drop it.

    Empty answers and loops are dropped. A finished answer is kept whole, with its end-of-turn token.
    One cut off by the token limit keeps its text up to the last sentence end, and is marked
    incomplete: trained on, but its end-of-turn token is not a label.
    """
    text = text.strip()
    if not text or is_degenerate(text):
        return None
    if finished:
        return text, True
    ends = [m.end() for m in SENTENCE_END.finditer(text)
            if not LIST_MARKER.fullmatch(text[text.rfind("\n", 0, m.start()) + 1:m.end()])]
    cut = text[:ends[-1]].rstrip() if ends else ""
    return (cut, False) if len(cut) >= MIN_KEPT_CHARS else None


def model_fingerprint(model_path: str) -> str:
    """A readable, content-sensitive name for a model folder: '<folder>-<hash of path + config>'."""
    path = Path(model_path)
    config = path / "config.json"
    text = str(path.resolve()) + (config.read_text() if config.exists() else "")
    return f"{path.name or 'model'}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def self_replay_cache_path(model_path: str, prompts: list[str], max_new_tokens: int) -> Path:
    settings = {"prompts": prompts, "max_new_tokens": max_new_tokens, "decoding": "greedy", "template": "chat",
                "records": "finished"}  # older caches lack the finished flag, so they are made again
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return forgetless_home() / "replay" / f"{model_fingerprint(model_path)}-{key}.jsonl"


def _generate(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int) -> list[tuple[str, bool]]:
    """Batched greedy (answer, finished before the token limit) with the chat template: the evaluation
    engine's decoder."""
    from forgetless.eval.generate import greedy_tokens
    from forgetless.eval.prompts import render_prompt

    was_training = model.training
    model.eval()
    try:
        outs = greedy_tokens(model, tokenizer, [render_prompt(tokenizer, p) for p in prompts],
                             max_new_tokens=max_new_tokens, batch_size=GENERATION_BATCH)
    finally:
        model.train(was_training)
    return [(tokenizer.decode(toks, skip_special_tokens=True).strip(), len(toks) < max_new_tokens) for toks in outs]
