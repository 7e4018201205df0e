"""Concrete next steps, from what dropped and, when the after-result carries it, the training config.

Each rule reads one symptom (a metric verdict, the diagnosis, the domain gain) and, where the run's
config is known, one cause (learning rate, epochs, replay, regularizers). Every recommendation
names the config key or command that applies it; thresholds come from `forgetless.train.presets`,
the same ones `forgetless train` warns with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from forgetless.compare.schema import Diagnosis, MetricReport, Recommendation, Verdict
from forgetless.lint import Boilerplate
from forgetless.stats import paired_sample_size
from forgetless.training_rules import (
    DEFAULT_LR,
    FEW_EXAMPLES,
    MANY_EPOCHS,
    MAX_SAFE_LR,
    PRESETS,
    safe_lr_limit,
)

LEAK_RISE = 0.03  # template copies this much above the base's share call for the data lint's fix
SWEEP = "forgetless sweep --tuned RUN_FOLDER --budget 0.05  (interpolate base and fine-tuned weights, pick the best mix)"


@dataclass(frozen=True)
class RunConfig:
    """The few training settings the rules need, read tolerantly from `EvalResult.training`."""

    method: str | None = None
    learning_rate: float | None = None
    epochs: float | None = None  # effective passes (from max_steps when the batch is known)
    n_examples: int | None = None
    replay_fraction: float = 0.0
    regularizers: tuple[str, ...] = ()
    lora_r: int | None = None
    strip_boilerplate: bool = False

    @classmethod
    def read(cls, training: dict[str, Any] | None, n_examples: int | None = None) -> RunConfig | None:
        """`training` is the run's config (possibly under a "config" key); unknown shapes read as None."""
        if not training:
            return None
        cfg = training["config"] if isinstance(training.get("config"), dict) else training
        method = cfg.get("method") if cfg.get("method") in MAX_SAFE_LR else None
        preset = PRESETS.get(str(cfg.get("preset")), {})
        lr = _num(cfg.get("learning_rate"))
        if lr is None and method is not None:
            lr = preset.get("learning_rate", DEFAULT_LR)[method]
        n = _num(training.get("n_examples") or cfg.get("n_examples")) or n_examples
        epochs = _num(cfg.get("epochs", preset.get("epochs")))
        steps = _num(cfg.get("max_steps"))
        replay = cfg.get("replay")
        fraction = _num(replay.get("fraction") if isinstance(replay, dict) else replay) or 0.0
        if steps and n:
            per_step = (_num(cfg.get("batch_size")) or 8) * (_num(cfg.get("gradient_accumulation_steps")) or 1)
            mix = n / (1 - fraction) if 0 <= fraction < 1 else n  # the domain examples and their replay share
            epochs = steps * per_step / mix
        regs = tuple(str(r.get("name")) for r in cfg.get("regularizers") or []
                     if isinstance(r, dict) and (_num(r.get("weight", 1.0)) or 0) > 0)
        lora = cfg.get("lora") if isinstance(cfg.get("lora"), dict) else {}
        r = _num(lora.get("r"))
        return cls(method=method, learning_rate=lr, epochs=epochs, n_examples=None if n is None else int(n),
                   replay_fraction=fraction, regularizers=regs, lora_r=None if r is None else int(r),
                   strip_boilerplate=cfg.get("strip_boilerplate") is True)


def _num(value: Any) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def _lr(x: float) -> str:
    return f"{x:.0e}".replace("e-0", "e-")  # 3e-4, not 0.0003


def _forgot(m: MetricReport | None) -> bool:
    return m is not None and any(c.verdict == "forgetting" for c in [m.overall, *m.suites, *m.categories])


def _training_rules(run: RunConfig) -> list[Recommendation]:
    out = []
    lr, method = run.learning_rate, run.method
    limit = safe_lr_limit(method, run.replay_fraction, run.regularizers) if method in MAX_SAFE_LR else None
    if limit is not None and lr is not None and lr > limit:
        fix = "learning_rate: 2e-5  (or method: lora)" if method == "full" else "learning_rate: 2e-4"
        out.append(Recommendation(action="Lower the learning rate" + (" or switch to LoRA" if method == "full" else ""),
                                  why=f"{method} fine-tuning at {_lr(lr)} is above {_lr(limit)}; large "
                                      "updates overwrite general abilities", change=fix))
    few = run.n_examples is None or run.n_examples < FEW_EXAMPLES
    if run.epochs is not None and run.epochs > MANY_EPOCHS and few:
        on = f" on {run.n_examples} examples" if run.n_examples else ""
        out.append(Recommendation(action="Train for fewer epochs", why=f"{run.epochs:g} passes{on} memorize the "
                                  "training replies", change="epochs: 2  (or a smaller max_steps)"))
    return out


def _symptom_rules(by: dict[str, MetricReport], diagnosis: Diagnosis, run: RunConfig | None) -> list[Recommendation]:
    out = []
    behaviour = _forgot(by.get("behaviour")) or _forgot(by.get("checklist"))
    collapse = diagnosis.template_collapse is not None and diagnosis.template_collapse.collapsed
    fraction = run.replay_fraction if run else 0.0
    if (behaviour or collapse) and fraction == 0:
        out.append(Recommendation(action="Add replay of general data; self-replay keeps the base model's own "
                                         "answers and formats", why="open answers or checklist behaviour dropped"
                                  + (" and the run used no replay" if run else ""),
                                  change="replay: {fraction: 0.25, source: self}"))
    elif behaviour:  # not for copies alone: at 0.5 the copies stayed (39-47%, BENCHMARKS.md 2026-12-08)
        more = min(0.5, round(max(0.25, 2 * fraction), 2))
        out.append(Recommendation(action="Replay more general data", why=f"behaviour dropped despite replay "
                                  f"fraction {fraction:g}", change=f"replay.fraction: {more:g}"))
    if collapse and "kl" not in (run.regularizers if run else ()):
        out.append(Recommendation(action="Add a KL regularizer towards the base model", why="general replies copy "
                                  "the training template", change="regularizers: [{name: kl, weight: 0.1}]"))
    if _forgot(by.get("knowledge")):
        if run and run.method == "lora":
            r = run.lora_r or 16
            out.append(Recommendation(action="Use a lower LoRA rank and an EWC penalty", why="multiple-choice "
                                      "knowledge dropped", change=f"lora.r: {max(1, r // 2)}  and  regularizers: "
                                      "[{name: ewc, weight: 100}]"))
        else:
            out.append(Recommendation(action="Anchor the weights that hold general knowledge (EWC or L2-SP), or "
                                             "use LoRA", why="multiple-choice knowledge dropped",
                                      change="regularizers: [{name: ewc, weight: 100}]  (or {name: l2sp}, or "
                                             "method: lora)"))
    if _forgot(by.get("text")) and not (behaviour or collapse) and "kl" not in (run.regularizers if run else ()):
        out.append(Recommendation(action="Keep the output distribution close to the base model", why="general text "
                                  "became less likely", change="regularizers: [{name: kl, weight: 0.1}]"))
    return out


def _learning_rule(domain: list[MetricReport], run: RunConfig | None) -> list[Recommendation]:
    """No significant domain gain: the fine-tune did not learn yet. More passes or a higher rate, watched by
    the monitor, come before anything about forgetting."""
    if not domain or any(m.overall.ci_high < 0 for m in domain):
        return []
    best = max(domain, key=lambda m: -m.overall.drop)
    o = best.overall
    why = (f"no domain gain is significant (best: {best.metric} {-o.drop:+.3f}, CI [{-o.ci_high:+.3f}, "
           f"{-o.ci_low:+.3f}])")
    if run and run.epochs is not None:
        why += f" after {run.epochs:.3g} passes over the training data"
        more = f"epochs: {max(2.0, 2 * run.epochs):.3g}"
    else:
        more = "epochs: 3"
    if run and run.learning_rate is not None:
        why += f" at learning rate {_lr(run.learning_rate)}"
        limit = safe_lr_limit(run.method or "lora", run.replay_fraction, run.regularizers)
        if run.learning_rate * 2 <= limit:
            more += f"  (or learning_rate: {_lr(2 * run.learning_rate)})"
    return [Recommendation(action="Train longer or at a higher learning rate, with the forgetting monitor on",
                           why=why, change=f"{more}  and  monitor: {{every: 20, early_stop: true}}")]


def _lint_rule(diagnosis: Diagnosis, boilerplate: Sequence[Boilerplate],
               run: RunConfig | None) -> list[Recommendation]:
    """General replies copy the training phrasing and the data lint found its cause: strip it for the run."""
    tc = diagnosis.template_collapse
    if tc is None or not boilerplate or (run and run.strip_boilerplate):
        return []
    if not (tc.collapsed or tc.share_after - tc.share_before >= LEAK_RISE):
        return []
    b = max(boilerplate, key=lambda b: b.share)
    return [Recommendation(action=f"Strip the training set's {b.kind} before training",
                           why=f"{tc.share_after:.0%} of general replies copy the training phrasing (before: "
                               f"{tc.share_before:.0%}), and {b.share:.0%} of training responses share the {b.kind} "
                               f"\"{b.text}\"", change="strip_boilerplate: true  (or --set strip_boilerplate=true)")]


def _domain_rule(domain: list[MetricReport], threshold: float) -> list[Recommendation]:
    if not domain:
        return []
    best = max(domain, key=lambda m: -m.overall.drop)
    gain = -best.overall.drop
    if gain >= threshold and best.overall.ci_high < 0:  # a real gain of at least the threshold
        return []
    return [Recommendation(action="Reconsider the fine-tune: it forgets more than it gains",
                           why=f"the best domain gain is {gain:+.3f} ({best.metric}), below the {threshold:g} "
                               "threshold or not significant", change=SWEEP)]


def _more_items(metrics: list[MetricReport], threshold: float,
                available: dict[str, int] | None = None) -> list[Recommendation]:
    """How many items would settle an inconclusive metric, and where they come from: the whole bundled
    suites when they hold enough (`available`: items per metric there), else the user's own."""
    unsure = [m.overall for m in metrics if m.overall.verdict == "inconclusive" and m.metric != "text"]
    if not unsure or threshold <= 0:
        return []
    c = min(unsure, key=lambda c: c.n)
    psi = min(1.0, max((c.lost + c.gained) / c.n, 3 / c.n, threshold))  # summarize_drop's floor, and |drop| <= psi
    need = math.ceil(paired_sample_size(threshold, p_discordant=psi))
    have = (available or {}).get(c.metric, 0)
    if have >= need and have > c.n:
        change = f"forgetless run --items 0  (all {have} {c.metric} items of the bundled suites)"
    else:
        change = (f"write {need - max(have, c.n)} or more {c.metric} items of your own (docs/suite-format.md) and "
                  "pass them with --suite to `forgetless eval` on both models")
    return [Recommendation(action=f"Probe with more items: about {need} {c.metric} items are needed to detect a "
                                  f"drop of {threshold:g}", why=f"{c.n} items can only detect drops of "
                           f"{c.mde:.3f}" if c.mde is not None else f"{c.n} items are too few", change=change)]


def recommend(verdict: Verdict, metrics: list[MetricReport], domain: list[MetricReport], diagnosis: Diagnosis,
              threshold: float, training: dict[str, Any] | None, n_examples: int | None = None,
              boilerplate: Sequence[Boilerplate] = (), available: dict[str, int] | None = None) -> list[Recommendation]:
    """The report's recommendations, in the order of the user's question: did it learn (more passes, a higher
    rate), what did it cost (the data lint's fix for a leaked template, then forgetting's causes), and only
    then how sure we are (more items, with where to get them)."""
    by = {m.metric: m for m in metrics}
    run = RunConfig.read(training, n_examples)
    out = _lint_rule(diagnosis, boilerplate, run)
    if verdict == "forgetting" or diagnosis.kind not in ("none", "inconclusive"):
        out += (_training_rules(run) if run else []) + _symptom_rules(by, diagnosis, run)
        out += _domain_rule(domain, threshold)
        out.append(Recommendation(action="Recover without retraining by interpolating weights",
                                  why="a mix of base and fine-tuned weights often keeps most of the domain gain",
                                  change=SWEEP))
        return out
    out = _learning_rule(domain, run) + out
    if verdict == "no_forgetting":
        acc = [m.overall for m in metrics if m.metric != "text"] or [m.overall for m in metrics]
        bound = max(c.ci_high for c in acc)
        mde = max((c.mde for c in acc if c.mde is not None), default=None)
        power = f"; with 80% power they detect drops of {mde:.3f} or more" if mde is not None else ""
        return out + [Recommendation(action="Safe to ship" if not out else "Nothing was forgotten",
                                     why=f"every metric rules out a drop of {threshold:g} (largest upper bound "
                                         f"{bound:.3f}){power}; smaller losses may remain",
                                     change="forgetless compare BEFORE AFTER --fail-on-forgetting  (keep it in CI)")]
    return out + (_more_items(metrics, threshold, available) or [Recommendation(
        action="Collect more evidence before shipping", why="no metric shows forgetting, but not every metric rules "
        "it out", change="forgetless eval --suite YOUR_SUITE.jsonl  (on both models)")])
