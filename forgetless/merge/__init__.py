"""Recover: weight-space interpolation between the base and the fine-tuned model (docs/recover.md).

    interpolate_state, layer_alpha, per_layer     the math, pure functions on tensors
    Interpolator (WeightInterpolator, LoraScaler)  set a loaded model to theta(alpha) in place
    merge                                          write theta(alpha) as a loadable model
    sweep, choose_alpha                            evaluate many alphas, pick one inside a budget
"""

from forgetless.merge.interpolate import (
    Alpha,
    Interpolator,
    LoraScaler,
    WeightInterpolator,
    block_index,
    interpolate_into,
    interpolate_state,
    interpolate_tensor,
    layer_alpha,
    per_layer,
)
from forgetless.merge.saving import MERGE_FILE, Pair, load_pair, merge, save_merged
from forgetless.merge.sweep import DEFAULT_ALPHAS, SweepResult, SweepRow, choose_alpha, sweep

__all__ = [
    "DEFAULT_ALPHAS",
    "MERGE_FILE",
    "Alpha",
    "Interpolator",
    "LoraScaler",
    "Pair",
    "SweepResult",
    "SweepRow",
    "WeightInterpolator",
    "block_index",
    "choose_alpha",
    "interpolate_into",
    "interpolate_state",
    "interpolate_tensor",
    "layer_alpha",
    "load_pair",
    "merge",
    "per_layer",
    "save_merged",
    "sweep",
]
