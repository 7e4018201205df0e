"""Presets filled into a config, and the warnings shown before a risky run starts. The values and limits
are the field's rules of thumb, kept in `forgetless.training_rules`. Explicit values always win: a
preset fills only the fields the user did not set.
"""

from __future__ import annotations

from typing import Any

from forgetless.train.config import TrainConfig
from forgetless.training_rules import DEFAULT_LR, FEW_EXAMPLES, MANY_EPOCHS, PRESETS, safe_lr_limit


def resolve(config: TrainConfig) -> TrainConfig:
    """Fill preset values into the fields the user left unset, and a default learning rate."""
    updates: dict[str, Any] = {}
    if config.preset is not None:
        for key, value in PRESETS[config.preset].items():
            if key not in config.model_fields_set:
                updates[key] = value[config.method] if isinstance(value, dict) else value
    if config.learning_rate is None and "learning_rate" not in updates:
        updates["learning_rate"] = DEFAULT_LR[config.method]
    if not updates:
        return config
    resolved = config.model_copy(update=updates)
    return TrainConfig.model_validate(resolved.model_dump())  # re-check the filled-in values


def risk_warnings(config: TrainConfig, n_examples: int) -> list[str]:
    """Plain-language warnings about settings known to cause forgetting or divergence.

    `config` should be resolved (a learning rate set); `n_examples` counts domain examples.
    """
    out: list[str] = []
    lr = config.learning_rate or DEFAULT_LR[config.method]
    limit = safe_lr_limit(config.method, config.replay.fraction,
                          [r.name for r in config.regularizers if r.resolved_weight() > 0])
    if lr > limit:
        usual = "1e-5..2e-5" if config.method == "full" else "1e-4..3e-4"
        out.append(f"learning rate {lr:g} is above {limit:g} for {config.method} fine-tuning (usual: {usual}); "
                   "expect strong forgetting or divergence")
    if config.max_steps is None and config.epochs > MANY_EPOCHS and n_examples < FEW_EXAMPLES:
        out.append(f"{config.epochs:g} epochs over only {n_examples} examples: the model will memorize them and "
                   f"forget more; try <= 3 epochs or more data")
    if config.warmup_ratio == 0 and config.lr_scheduler != "constant":
        out.append("no learning-rate warm-up: the first updates hit at the full rate; warmup_ratio 0.05 is usual")
    elif config.warmup_ratio == 0:
        out.append("constant learning rate with no warm-up: the first updates hit at the full rate")
    protected = config.replay.fraction > 0 or any(r.resolved_weight() > 0 for r in config.regularizers)
    if config.method == "full" and not protected and config.freeze.layers == 0:
        out.append("full fine-tuning with no replay, no regularizer and no frozen layers: nothing protects "
                   "general abilities; consider replay.fraction 0.1-0.25 or an ewc/l2sp regularizer")
    if config.method == "lora" and config.lora.alpha / config.lora.r > 4:
        out.append(f"LoRA alpha/r = {config.lora.alpha / config.lora.r:g} scales updates strongly; "
                   "alpha = 2*r is usual")
    if n_examples < 10:
        out.append(f"only {n_examples} training examples")
    if config.weight_decay > 0.1:
        out.append(f"weight decay {config.weight_decay:g} is unusually strong (0.01 is usual)")
    return out
