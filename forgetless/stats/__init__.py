"""Paired statistics for before/after comparisons: pure functions on numpy arrays.

    paired_counts, mcnemar_exact, sign_flip_test     is the change real?
    paired_bootstrap_ci, paired_newcombe_ci          how big is it?
    holm                                             many suites at once
    minimum_detectable_drop, paired_sample_size      how big a change could this suite see?
    summarize_drop, verdict                          one suite, one record, one word
"""

from forgetless.stats.multiple import holm
from forgetless.stats.paired import (
    PairedCounts,
    mcnemar_exact,
    paired_bootstrap_ci,
    paired_counts,
    paired_newcombe_ci,
    sign_flip_test,
)
from forgetless.stats.power import (
    DEFAULT_P_DISCORDANT,
    discordance_rate,
    minimum_detectable_drop,
    minimum_detectable_shift,
    paired_sample_size,
)
from forgetless.stats.summary import DropStats, Verdict, summarize_drop, verdict

__all__ = [
    "DEFAULT_P_DISCORDANT",
    "DropStats",
    "PairedCounts",
    "Verdict",
    "discordance_rate",
    "holm",
    "mcnemar_exact",
    "minimum_detectable_drop",
    "minimum_detectable_shift",
    "paired_bootstrap_ci",
    "paired_counts",
    "paired_newcombe_ci",
    "paired_sample_size",
    "sign_flip_test",
    "summarize_drop",
    "verdict",
]
