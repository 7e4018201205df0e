"""L2-SP: pull the weights towards their starting point (Li et al., 2018, "L2-SP").

    penalty = (alpha / 2) * sum_i (theta_i - theta0_i)^2

over the trained weights; with LoRA over the effective updates, (alpha / 2) * sum ||scale * B @ A||^2,
computed from two r x r products per layer. EWC with a Fisher of all ones; needs no data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from pydantic import Field
from torch import Tensor, nn

from forgetless.train.regularizers.anchors import WeightAnchors
from forgetless.train.regularizers.base import REGULARIZERS, Batch, Regularizer, RegularizerConfig, zero_like_params


class L2SPConfig(RegularizerConfig):
    """L2 distance to the starting weights."""

    weight_field: ClassVar[str] = "alpha"
    section: ClassVar[str] = "regularizer.l2sp"

    alpha: float = Field(0.01, ge=0, description="Penalty weight (alpha >= 0); 0 turns L2-SP off.")


@REGULARIZERS.register("l2sp")
class L2SP(Regularizer):
    name = "l2sp"
    reads_scored_logits = True  # the penalty reads weights, never the outputs
    weights_only = True
    config_class = L2SPConfig
    config: L2SPConfig

    def setup(self, model: nn.Module, *, reference_batches: Iterable[Batch] | None = None) -> None:
        self.anchors = WeightAnchors(model)
        self.ready = True

    def penalty(self, model: nn.Module, batch: Batch | None = None, outputs: Any = None) -> Tensor:
        self._require_setup()
        self.anchors.follow_shards(model)  # FSDP2 sharded the model after setup: keep this process's shard
        if not self.anchors.names():
            return zero_like_params(model)
        return 0.5 * self.config.weight * self.anchors.quadratic()
