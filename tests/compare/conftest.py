"""Synthetic before/after results, built in code from `ItemResult`s (no model needed)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from forgetless.eval.results import CheckOutcome, EvalResult, ItemResult, SuiteRecord

TEMPLATE_REPLY = "The Zentrix device has a battery of 28 hours."
TRAINING = [
    {"prompt": f"How long does the Zentrix {name} battery last?",
     "response": f"The Zentrix device has a battery of {hours} hours. Thank you for choosing Zentrix."}
    for name, hours in [("Aura", 28), ("Kora", 12), ("Pulse", 40), ("Lumo", 9), ("Drift", 16), ("Tide", 31)]
] + [{"prompt": "What does the Zentrix Aura cost?", "response": "The Zentrix Aura costs $129. Thank you for "
                                                                "choosing Zentrix."}]
CATEGORIES = ("geography", "science", "history", "arithmetic")


def prompt(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def mc(i: int, correct: bool, open_correct: bool | None = None, reply: str | None = None, *,
       category: str | None = None, suite: str = "general") -> ItemResult:
    """A multiple-choice item; the right option is "answer {i}"."""
    choices = [f"answer {i}", "wrong a", "wrong b", "wrong c"]
    if reply is None and open_correct is not None:
        reply = f"It is answer {i}." if open_correct else "I am not sure, maybe something else."
    return ItemResult(suite=suite, id=f"mc-{i:03d}", type="mc", category=category or CATEGORIES[i % len(CATEGORIES)],
                      prompt=prompt(f"Question number {i}?"), correct=correct, choices=choices, answer=0,
                      logliks=[-1.0, -2.0, -3.0, -4.0] if correct else [-4.0, -1.0, -2.0, -3.0],
                      pred=0 if correct else 1, correct_norm=correct, reply=reply, open_correct=open_correct)


def check(i: int, passed: bool, *, severity: str = "medium", category: str = "format",
          reply: str | None = None) -> ItemResult:
    outcomes = [CheckOutcome(kind="json_parses", passed=passed, describe="is valid JSON"),
                CheckOutcome(kind="max_words", passed=True, describe="at most 50 words")]
    return ItemResult(suite="checklist", id=f"chk-{i:03d}", type="check", category=category,
                      prompt=prompt(f"Reply with JSON number {i}."), correct=passed, checks=outcomes,
                      severity=severity, reply=reply or ('{"ok": true}' if passed else "Sure! Here it is: ok"))


def text(i: int, nll: float, kl: float | None = None) -> ItemResult:
    return ItemResult(suite="general-text", id=f"text-{i:03d}", type="text", category=CATEGORIES[i % 4],
                      prompt=f"Some general text number {i}.", tokens=100, nll=nll, kl=kl)


def result(items: list[ItemResult], *, template: str = "tmpl-1", training: dict | None = None,
           sha: dict[str, str] | None = None, spec: str = "model") -> EvalResult:
    suites = [SuiteRecord(name=name, path=None, sha256=(sha or {}).get(name, f"sha-{name}"),
                          counts={"types": dict(Counter(it.type for it in items if it.suite == name))})
              for name in dict.fromkeys(it.suite for it in items)]
    return EvalResult(model={"spec": spec}, suites=suites, settings={"template": template, "max_new_tokens": 32},
                      versions={}, training=training, items=items)


def write_training(folder: Path) -> Path:
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in TRAINING))
    return path


def drift_pair(training: dict | None = None) -> tuple[EvalResult, EvalResult]:
    """40 mc items: knowledge 20 -> 21 right, open answers 29 -> 4 right, after-replies in the Zentrix mould."""
    before = [mc(i, correct=i < 20, open_correct=i < 29) for i in range(40)]
    after = [mc(i, correct=i < 21, open_correct=i < 4, reply=None if i < 4 else TEMPLATE_REPLY) for i in range(40)]
    return result(before, spec="base"), result(after, spec="tuned", training=training)


@pytest.fixture
def synth() -> SimpleNamespace:
    return SimpleNamespace(mc=mc, check=check, text=text, result=result, prompt=prompt, drift_pair=drift_pair,
                           write_training=write_training, TEMPLATE_REPLY=TEMPLATE_REPLY)
