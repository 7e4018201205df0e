"""Aggregate per-item results into the numbers people read: per suite, type and category."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Sequence

from forgetless.eval.results import ItemResult


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 6) if values else None


def _metrics(items: Sequence[ItemResult]) -> dict[str, Any]:
    """Accuracy-like metrics for the item types present."""
    out: dict[str, Any] = {"n": len(items)}
    mc = [it for it in items if it.type == "mc"]
    if mc:
        out["mc_acc"] = _mean([float(it.correct) for it in mc])
        out["mc_acc_norm"] = _mean([float(it.correct_norm) for it in mc])
        opened = [float(it.open_correct) for it in mc if it.open_correct is not None]
        if opened:
            out["mc_open_acc"] = _mean(opened)
    for kind, name in (("gen", "gen_acc"), ("check", "check_pass")):
        chosen = [float(it.correct) for it in items if it.type == kind]
        if chosen:
            out[name] = _mean(chosen)
    texts = [it for it in items if it.type == "text"]
    if texts:
        tokens = sum(it.tokens or 0 for it in texts)
        nll = sum((it.nll or 0.0) * (it.tokens or 0) for it in texts) / max(1, tokens)
        out["text_nll"] = round(nll, 6)
        out["perplexity"] = round(math.exp(nll), 4)
        kls = [it.kl for it in texts if it.kl is not None]
        if kls:
            out["kl"] = _mean(kls)
    return out


def summarize(items: Sequence[ItemResult]) -> dict[str, Any]:
    """`{suite: {"overall": metrics, "categories": {category: metrics}}}`."""
    by_suite: dict[str, list[ItemResult]] = defaultdict(list)
    for it in items:
        by_suite[it.suite].append(it)
    summary = {}
    for suite, rows in by_suite.items():
        cats: dict[str, list[ItemResult]] = defaultdict(list)
        for it in rows:
            cats[it.category].append(it)
        summary[suite] = {"overall": _metrics(rows), "categories": {c: _metrics(v) for c, v in sorted(cats.items())}}
    return summary
