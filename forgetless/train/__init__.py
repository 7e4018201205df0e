"""Fine-tuning without forgetting: `train(config)` on a `TrainConfig` read by `load_config`.

The recipe (and with it transformers' Trainer) is imported on first use, so that reading and
checking a config stays fast.
"""

from __future__ import annotations

from typing import Any

from forgetless.train.config import TrainConfig, load_config, validate_config

__all__ = ["TrainConfig", "TrainResult", "load_config", "train", "validate_config"]


def __getattr__(name: str) -> Any:
    if name in ("train", "TrainResult"):
        from forgetless.train import recipe

        return getattr(recipe, name)
    raise AttributeError(f"module 'forgetless.train' has no attribute '{name}'")
