"""Where the trained weights started, and how far they have moved (shared by EWC and L2-SP).

Two kinds of trained weights:
- directly trained parameters (full fine-tuning, PEFT `modules_to_save`): delta = theta - theta0,
  with theta0 copied at setup. Memory: one copy of the trainable parameters only.
- LoRA-adapted weights: delta = scale * B @ A, anchored at zero by construction (no copy needed;
  the frozen base weight W is the anchor).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from forgetless.train.regularizers.lora import LoraSite, canonical_name, directly_trained, lora_sites


class WeightAnchors:
    """theta0 of the trained weights of a model, snapshotted at construction (= setup time)."""

    def __init__(self, model: nn.Module):
        self.params = directly_trained(model)  # name -> live Parameter
        self.theta0 = {n: p.detach().clone() for n, p in self.params.items()}
        self.sites: list[LoraSite] = lora_sites(model)

    def names(self) -> list[str]:
        """Every anchored weight: direct parameters and LoRA base weights (the model's names)."""
        return [*self.params, *(s.base_name for s in self.sites)]

    def deltas(self) -> Iterator[tuple[str, Tensor]]:
        """(name, delta) for each trained weight; differentiable in the trained parameters."""
        for n, p in self.params.items():
            yield n, p - self.theta0[n]
        for site in self.sites:
            yield site.base_name, site.delta()

    def squared_distance(self) -> Tensor:
        """sum over trained weights of ||delta||^2 (float32); LoRA without forming B @ A."""
        terms = [(p.float() - self.theta0[n].float()).square().sum() for n, p in self.params.items()]
        terms += [site.delta_sq_norm() for site in self.sites]
        return torch.stack(terms).sum() if terms else torch.zeros(())

    @staticmethod
    def key(name: str) -> str:
        return canonical_name(name)
