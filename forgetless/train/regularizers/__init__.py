"""Anti-forgetting regularizers, registered by name: `ewc`, `l2sp`, `kl`.

    reg = build_regularizer("ewc", {"lambda": 100.0})
    reg.setup(model, reference_batches=base_data)      # anchors + Fisher of the base model
    loss = task_loss + reg.penalty(model, batch, outputs)
"""

from forgetless.train.regularizers.anchors import WeightAnchors
from forgetless.train.regularizers.base import REGULARIZERS, Regularizer, RegularizerConfig, build_regularizer
from forgetless.train.regularizers.ewc import EWC, EWCConfig
from forgetless.train.regularizers.kl import KLConfig, KLToBase, mean_kl
from forgetless.train.regularizers.l2sp import L2SP, L2SPConfig
from forgetless.train.regularizers.lora import canonical_name, lora_effective_updates, lora_sites

__all__ = [
    "EWC",
    "L2SP",
    "REGULARIZERS",
    "EWCConfig",
    "KLConfig",
    "KLToBase",
    "L2SPConfig",
    "Regularizer",
    "RegularizerConfig",
    "WeightAnchors",
    "build_regularizer",
    "canonical_name",
    "lora_effective_updates",
    "lora_sites",
    "mean_kl",
]
