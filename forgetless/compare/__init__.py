"""Compare: score the same probe items before and after fine-tuning, pair them, and say what was forgotten.

    from forgetless.compare import compare
    report = compare(EvalResult.load("before.json"), EvalResult.load("after.json"))
    report.verdict, report.diagnosis.label, report.recommendations
"""

from forgetless.compare.report import compare
from forgetless.compare.schema import ForgettingReport

__all__ = ["ForgettingReport", "compare"]
