"""The field's rules of thumb for fine-tuning, as data: preset values and the limits above which a run is
risky. Shared by training (presets, warnings before a run) and by `compare` (recommendations after
one), so it depends on neither.

Hugging Face, torchtune and LoRA-paper recipes agree on these orders of magnitude: full fine-tuning
wants a learning rate of 1e-5..2e-5; LoRA, whose update starts at zero and is scaled by alpha/r,
wants 1e-4..3e-4; a ~5% warm-up and cosine decay; weight decay 0.01. The `aggressive` preset
deliberately leaves that range (3e-4 full, 1e-3 LoRA, no warm-up, constant rate): it exists to
demonstrate forgetting, not to be used.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "safe": {"learning_rate": {"full": 1e-5, "lora": 1e-4}, "warmup_ratio": 0.05, "lr_scheduler": "cosine",
             "weight_decay": 0.01, "epochs": 1.0},
    "balanced": {"learning_rate": {"full": 2e-5, "lora": 2e-4}, "warmup_ratio": 0.05, "lr_scheduler": "cosine",
                 "weight_decay": 0.01, "epochs": 2.0},
    "aggressive": {"learning_rate": {"full": 3e-4, "lora": 1e-3}, "warmup_ratio": 0.0, "lr_scheduler": "constant",
                   "weight_decay": 0.0, "epochs": 3.0},
}
DEFAULT_LR = PRESETS["balanced"]["learning_rate"]  # when neither a preset nor a learning rate is given

# Thresholds of `risk_warnings`, named so that docs and tests can quote them.
MAX_SAFE_LR = {"full": 5e-5, "lora": 5e-4}
# With replay and a KL term holding the replayed examples to the base, rates this many times higher keep general
# abilities (Marek et al. 2026; measured for `forgetless run` in docs/training.md)
PROTECTED_LR_FACTOR = 10
MANY_EPOCHS, FEW_EXAMPLES = 5, 1000


def safe_lr_limit(method: str, replay_fraction: float, regularizers: list[str] | tuple[str, ...]) -> float:
    """The learning rate above which a run is warned about: higher for LoRA when replay and KL protect it
    (measured for LoRA only)."""
    protected = method == "lora" and replay_fraction > 0 and "kl" in regularizers
    return MAX_SAFE_LR[method] * (PROTECTED_LR_FACTOR if protected else 1)
