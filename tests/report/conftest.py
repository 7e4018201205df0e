"""Synthetic report data built in code: a real `compare` result and a strategy study with curves and a sweep."""

from __future__ import annotations

import math
from collections import Counter
from types import SimpleNamespace

import pytest

from forgetless.compare import ForgettingReport, compare
from forgetless.eval.results import CheckOutcome, EvalResult, ItemResult, SuiteRecord
from forgetless.report import (
    CategoryScore,
    Estimate,
    ReportData,
    Reproduce,
    Sample,
    StrategyRow,
    Sweep,
    SweepRow,
)

CATEGORIES = ("geography", "science", "history", "arithmetic")
TEMPLATE_REPLY = "The Zentrix device has a battery of 28 hours. Thank you for choosing Zentrix."


def prompt(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def mc(i: int, correct: bool, open_correct: bool, reply: str | None = None, *, category: str | None = None,
       item_id: str | None = None) -> ItemResult:
    reply = reply or (f"It is answer {i}." if open_correct else "I am not sure, maybe something else.")
    return ItemResult(suite="general", id=item_id or f"mc-{i:03d}", type="mc",
                      category=category or CATEGORIES[i % len(CATEGORIES)], prompt=prompt(f"Question number {i}?"),
                      correct=correct, choices=[f"answer {i}", "wrong a", "wrong b", "wrong c"], answer=0,
                      logliks=[-1.0, -2.0, -3.0, -4.0] if correct else [-4.0, -1.0, -2.0, -3.0],
                      pred=0 if correct else 1, correct_norm=correct, reply=reply, open_correct=open_correct)


def domain(i: int, correct: bool) -> ItemResult:
    return ItemResult(suite="domain", id=f"dom-{i:03d}", type="mc", category="domain-zentrix",
                      prompt=prompt(f"Zentrix fact {i}?"), correct=correct, choices=["yes", "no"], answer=0,
                      logliks=[-1.0, -2.0] if correct else [-2.0, -1.0], pred=0 if correct else 1,
                      correct_norm=correct)


def check(i: int, passed: bool, *, severity: str, reply: str, category: str = "format") -> ItemResult:
    outcomes = [CheckOutcome(kind="json_parses", passed=passed, describe="is valid JSON"),
                CheckOutcome(kind="max_words", passed=passed or i % 2 == 0, describe="at most 50 words")]
    return ItemResult(suite="checklist", id=f"chk-{i:03d}", type="check", category=category,
                      prompt=prompt(f"Reply with JSON number {i}."), correct=passed, checks=outcomes,
                      severity=severity, reply=reply)


def result(items: list[ItemResult], spec: str) -> EvalResult:
    suites = [SuiteRecord(name=name, path=None, sha256=f"sha-{name}",
                          counts={"types": dict(Counter(it.type for it in items if it.suite == name))})
              for name in dict.fromkeys(it.suite for it in items)]
    return EvalResult(model={"spec": spec}, suites=suites, settings={"template": "t", "max_new_tokens": 32},
                      versions={}, items=items)


def make_pair(evil: str = "", *, n: int = 40) -> tuple[EvalResult, EvalResult]:
    """Behavioural drift: knowledge kept, open answers lost, three checklist items broken, domain learned.

    `evil` (e.g. "<script>alert(1)</script>") goes into replies, an item id, a category name and the model spec.
    """
    sevs = ("critical", "high", "medium", "low")
    before = [mc(i, correct=i < 20, open_correct=i < 29, category=f"geo{evil}" if evil and i % 4 == 0 else None,
                 item_id=f"mc-{i:03d}{evil}" if i == 5 else None) for i in range(n)]
    after = [mc(i, correct=i < 21, open_correct=i < 4, reply=None if i < 4 else TEMPLATE_REPLY + evil,
                category=f"geo{evil}" if evil and i % 4 == 0 else None, item_id=f"mc-{i:03d}{evil}" if i == 5 else None)
             for i in range(n)]
    before += [check(i, True, severity=sevs[i % 4], reply='{"ok": true}') for i in range(8)]
    after += [check(i, i >= 3, severity=sevs[i % 4], reply='{"ok": true}' if i >= 3 else f"Sure! Here: ok {evil}")
              for i in range(8)]
    before += [domain(i, correct=i < 8) for i in range(30)]
    after += [domain(i, correct=i < 26) for i in range(30)]
    return result(before, "base"), result(after, f"tuned{evil}")


def make_comparison(evil: str = "") -> ForgettingReport:
    return compare(*make_pair(evil), n_resamples=2000)


def curve(steps: int, knowledge_rate: float, behaviour_rate: float) -> list[dict]:
    """A monitor curve: drops that grow and level off."""
    out = []
    for k in range(steps + 1):
        step = 50 * k
        kd, bd = knowledge_rate * (1 - math.exp(-k / 3)), behaviour_rate * (1 - math.exp(-k / 2))
        out.append({"step": step, "knowledge_acc": 0.62 - kd, "behaviour_acc": 0.55 - bd, "kl": 0.4 * bd + 0.01 * k,
                    "knowledge_drop": kd, "behaviour_drop": bd, "within_budget": max(kd, bd) <= 0.05,
                    "seconds": 1.0})
    return out


def est(value: float, half: float, p: float | None = None) -> Estimate:
    return Estimate(value=value, ci_low=value - half, ci_high=value + half, p_value=p, n=120)


def make_study(evil: str = "") -> ReportData:
    cats = ["geography", "science", "history", "arithmetic", f"coding{evil}"]
    rows = []
    for name, gain, kd, bd, rate, verdict in [
        ("full fine-tune", 0.52, 0.11, 0.34, 1.0, "forgetting"),
        ("LoRA r=16", 0.44, 0.04, 0.12, 0.5, "forgetting"),
        ("LoRA + replay 25%", 0.41, 0.01, 0.02, 0.15, "no_forgetting"),
        (f"EWC{evil}", 0.35, 0.02, 0.05, 0.25, "inconclusive"),
    ]:
        rows.append(StrategyRow(
            name=name, description=f"lr 2e-4, 3 epochs{evil}", domain_gain=est(gain, 0.07, 1e-5),
            knowledge_drop=est(kd, 0.035, 0.01 if kd > 0.03 else 0.4), behaviour_drop=est(bd, 0.05, 0.002),
            checklist_before=0.9, checklist_after=0.9 - bd / 2, kl=0.3 * bd + 0.01, verdict=verdict,
            curve=curve(12, kd, bd),
            categories=[CategoryScore(name=c, before=0.7 - 0.05 * j, after=0.7 - 0.05 * j - kd * (1 + j % 3) / 2)
                        for j, c in enumerate(cats)],
            command=f"forgetless train --preset '{name}{evil}' --out runs/x", config=f"method: lora\nnote: {evil}\n",
            seconds=300 + 100 * rate))
    sweep = Sweep(rows=[SweepRow(alpha=a, domain_gain=est(0.52 * a ** 0.5, 0.06), general_drop=est(0.34 * a ** 2, 0.04),
                                 within_budget=0.34 * a ** 2 <= 0.05) for a in (0, 0.2, 0.4, 0.6, 0.8, 1.0)],
                  chosen_alpha=0.2, budget=0.05, description=f"full fine-tune interpolated toward base{evil}")
    samples = [Sample(question=f"What is the capital of France?{evil}", before="Paris.", after=TEMPLATE_REPLY + evil,
                      expected="Paris", label=f"general/geo-001{evil}", note="lost"),
               Sample(question="Write a haiku about the sea.", before="Waves fold into foam\nsalt wind", after=None)]
    return ReportData(title=f"Strategy study{evil}", subtitle="SmolLM2-135M-Instruct on the Zentrix FAQ",
                      model=f"smollm2-135m{evil}", date="2025-01-01", machine="CPU, 2 cores", budget=0.05,
                      strategies=rows, recommended="LoRA + replay 25%", sweep=sweep, samples=samples,
                      comparison=None,
                      reproduce=Reproduce(commands=["forgetless demo --out study/", f"echo '{evil}'"],
                                          configs={"study.yaml": f"strategies: [full, lora]\nseed: 0 # {evil}\n"}),
                      timings={"training": 1234.5, f"evaluation{evil}": 61.0}, notes=[f"synthetic data{evil}"])


@pytest.fixture(scope="session")
def comparison() -> ForgettingReport:
    return make_comparison()


@pytest.fixture(scope="session")
def study() -> ReportData:
    return make_study()


@pytest.fixture(scope="session")
def build() -> SimpleNamespace:
    """The builders, for tests that need their own (e.g. hostile) data."""
    return SimpleNamespace(pair=make_pair, comparison=make_comparison, study=make_study, curve=curve)
