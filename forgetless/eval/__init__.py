"""Detect: score models on probe suites (knowledge by log-likelihood, behaviour by generation, drift)."""

from forgetless.eval.evaluate import DEFAULT_SUITES, EvalSettings, evaluate, run_reference
from forgetless.eval.results import EvalResult, ItemResult

__all__ = ["DEFAULT_SUITES", "EvalResult", "EvalSettings", "ItemResult", "evaluate", "run_reference"]
