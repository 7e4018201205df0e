"""Where the trained weights started, and how far they have moved (shared by EWC and L2-SP).

Two kinds of trained weights:
- directly trained parameters (full fine-tuning, PEFT `modules_to_save`): delta = theta - theta0,
  with theta0 copied at setup. Memory: one copy of the trainable parameters only.
- LoRA-adapted weights: delta = scale * B @ A, anchored at zero by construction (no copy needed;
  the frozen base weight W is the anchor).

Under FSDP2 the anchors follow the parameters' shards (`follow_shards`, `sharded.py`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor

from forgetless.errors import ForgetlessError
from forgetless.train.regularizers.lora import (
    LoraSite,
    canonical_name,
    directly_trained,
    lora_sites,
)
from forgetless.train.regularizers.quadratic import (
    anchored_quadratic,
    lora_quadratic,
    lora_sq_norm,
)
from forgetless.train.regularizers.sharded import (
    is_sharded,
    lora_rows_quadratic,
    shard_all,
    sharded_quadratic,
)


class WeightAnchors:
    """theta0 of the trained weights of a model, snapshotted at construction (= setup time)."""

    def __init__(self, model: nn.Module):
        self.params = directly_trained(model)  # name -> live Parameter
        self.theta0 = {n: p.detach().clone() for n, p in self.params.items()}
        self.sites: list[LoraSite] = lora_sites(model)
        self.sharded = False

    def follow_shards(self, model: nn.Module) -> bool:
        """Once FSDP2 has sharded the model (the Trainer does, after setup): use its DTensor parameters and
        keep only this process's shard of theta0. True when that happened now: the caller shards its Fisher."""
        if self.sharded or not is_sharded(model):
            return False
        live = dict(model.named_parameters())
        whole = [n for n in self.names() if not isinstance(live[n], DTensor)]
        if whole:  # FSDP2's root module holds its weights whole between its forward and backward
            raise ForgetlessError(f"under FSDP2, weight penalties must run while every weight is a shard, but "
                                  f"'{whole[0]}' is whole", hint="compute them before the model's forward")
        self.params = {n: live[n] for n in self.params}
        self.theta0 = shard_all(self.theta0, self.params)
        self.mesh_weights = {s.base_name: live[s.base_name] for s in self.sites}
        self.mesh = next(iter(live[n] for n in self.names())).device_mesh
        self.sharded = True
        return True

    def names(self) -> list[str]:
        """Every anchored weight: direct parameters and LoRA base weights (the model's names)."""
        return [*self.params, *(s.base_name for s in self.sites)]

    def quadratic(self, fisher: dict[str, Tensor] | None = None) -> Tensor:
        """sum over trained weights of F * delta^2 (fisher: {name: F}; None: all ones, ||delta||^2), float32.

        Differentiable in the trained parameters, with a fused forward/backward (see `quadratic`);
        for LoRA with F = 1 without forming B @ A at all.
        """
        if self.sharded:
            return self._sharded_quadratic(fisher)
        names = list(self.params)
        terms = []
        if names:
            weights = None if fisher is None else [fisher[n] for n in names]
            terms.append(anchored_quadratic([self.params[n] for n in names], [self.theta0[n] for n in names], weights))
        single = [s for s in self.sites if len(s.adapters) == 1]
        if single:
            factors = [s.factors(s.adapters[0]) for s in single]
            if fisher is None:
                terms.append(lora_sq_norm(factors))
            else:
                terms.append(lora_quadratic(factors, [fisher[s.base_name] for s in single]))
        for site in self.sites:  # several adapters on one weight: their summed update, by plain autograd
            if len(site.adapters) > 1:
                weight = 1.0 if fisher is None else fisher[site.base_name]
                terms.append((weight * site.delta().square()).sum())
        return torch.stack(terms).sum()

    def _sharded_quadratic(self, fisher: dict[str, Tensor] | None) -> Tensor:
        """The same sum over this process's shards, by plain autograd, then one all-reduce (`sharded.py`)."""
        terms = []
        for n, p in self.params.items():
            square = (p.float() - self.theta0[n].float()).square()
            terms.append((square if fisher is None else fisher[n] * square).sum())
        for site in self.sites:
            factors = [site.factors(adapter) for adapter in site.adapters]
            weight = self.mesh_weights[site.base_name]
            terms.append(lora_rows_quadratic(factors, weight, None if fisher is None else fisher[site.base_name]))
        return sharded_quadratic(terms, self.mesh)

    @staticmethod
    def key(name: str) -> str:
        return canonical_name(name)
