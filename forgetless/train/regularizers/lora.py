"""What a LoRA (PEFT) model has changed: the effective update of each adapted weight.

A LoRA layer computes  y = W x + scale * B (A x),  so its weight is effectively

    W_eff = W + delta_W,   delta_W = scale * (B @ A)      (transposed if fan_in_fan_out)

with A: (r, in), B: (out, r), scale = lora_alpha / r (or / sqrt(r) with rsLoRA; PEFT keeps it in
the layer's `scaling[adapter]`). Weight-space regularizers (EWC, L2-SP) penalise delta_W, not A
and B themselves, since A and B have no "base" value to be anchored to.

Names: weights are keyed by the PEFT model's parameter name of the base weight, e.g.
`base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight`; `canonical_name` maps any
name to the plain model's (`model.layers.0.self_attn.q_proj.weight`), so a Fisher computed on the
base model can anchor a LoRA run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import Tensor, nn

from forgetless.errors import ForgetlessError

_WRAPPER_PARTS = re.compile(r"^base_model\.model\.|\.base_layer(?=\.)|\.original_module(?=\.)|\.modules_to_save\.[^.]+(?=\.)")


def canonical_name(name: str) -> str:
    """The parameter's name in the plain (un-wrapped) model: strips PEFT's wrapper parts."""
    return _WRAPPER_PARTS.sub("", name)


@dataclass(frozen=True)
class LoraSite:
    """One adapted weight: the base weight's name and the adapters active on it."""

    base_name: str
    layer: nn.Module
    adapters: tuple[str, ...]

    def factors(self, adapter: str) -> tuple[Tensor, Tensor, float, bool]:
        """(A (r, in), B (out, r), scale, transpose) for one adapter; transpose: embedding/fan_in_fan_out."""
        layer = self.layer
        if adapter in getattr(layer, "lora_A", {}):
            a, b = layer.lora_A[adapter].weight, layer.lora_B[adapter].weight
            return a, b, float(layer.scaling[adapter]), bool(getattr(layer, "fan_in_fan_out", False))
        a, b = layer.lora_embedding_A[adapter], layer.lora_embedding_B[adapter]
        return a, b, float(layer.scaling[adapter]), True  # PEFT stores embedding updates transposed

    def delta(self) -> Tensor:
        """delta_W = sum over active adapters of scale * (B @ A), shaped like the base weight."""
        total = None
        for adapter in self.adapters:
            a, b, scale, transpose = self.factors(adapter)
            d = (b.float() @ a.float()) * scale  # (out, r) @ (r, in) -> (out, in)
            d = d.T if transpose else d
            total = d if total is None else total + d
        return total


def _lora_layer_types() -> tuple[type, ...]:
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # peft missing: no LoRA layers can exist
        return ()
    return (LoraLayer,)


def _check_supported(name: str, layer: nn.Module, adapter: str) -> None:
    if getattr(layer, "merged", False):
        raise ForgetlessError(f"LoRA adapter '{adapter}' is merged into '{name}'", hint="unmerge it before training")
    if getattr(layer, "lora_variant", {}).get(adapter) is not None or getattr(layer, "use_dora", {}).get(adapter):
        raise ForgetlessError(
            f"'{name}' uses a LoRA variant (e.g. DoRA) whose update is not scale * B @ A",
            hint="use plain LoRA, or the kl regularizer, which does not look at weights",
        )
    lora_b = getattr(layer, "lora_B", {})
    if adapter in lora_b and getattr(lora_b[adapter], "bias", None) is not None:
        raise ForgetlessError(f"'{name}' has a LoRA bias (lora_bias=True)", hint="set lora_bias=False")
    if adapter not in getattr(layer, "lora_A", {}) and adapter not in getattr(layer, "lora_embedding_A", {}):
        raise ForgetlessError(f"'{name}' is a LoRA layer type that is not supported (e.g. conv)", hint="target Linear or Embedding modules")


def lora_sites(model: nn.Module) -> list[LoraSite]:
    """Every LoRA-adapted weight of the model with its active adapters (empty if none)."""
    types = _lora_layer_types()
    if not types:
        return []
    names = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
    sites = []
    for module_name, layer in model.named_modules():
        if not isinstance(layer, types) or getattr(layer, "disable_adapters", False):
            continue
        adapters = tuple(a for a in layer.active_adapters if a in layer.scaling)
        for adapter in adapters:
            _check_supported(module_name, layer, adapter)
        weight = layer.get_base_layer().weight
        if adapters:
            if not weight.is_floating_point():
                raise ForgetlessError(
                    f"base weight of '{module_name}' is quantized ({weight.dtype}); its Fisher is undefined",
                    hint="use l2sp or kl with quantized (QLoRA) models",
                )
            sites.append(LoraSite(names[id(weight)], layer, adapters))
    return sites


def lora_effective_updates(model: nn.Module) -> dict[str, Tensor]:
    """{base weight name: delta_W} for every LoRA-adapted weight; W + delta_W is the merged weight.

    Differentiable in A and B (float32). Empty for a model without LoRA.
    """
    return {site.base_name: site.delta() for site in lora_sites(model)}


def lora_parameter_ids(model: nn.Module) -> set[int]:
    """ids of the A/B factor tensors of every LoRA layer (trainable or not)."""
    ids: set[int] = set()
    types = _lora_layer_types()
    for layer in model.modules():
        if types and isinstance(layer, types):
            for attr in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B"):
                ids.update(id(p) for p in getattr(layer, attr, nn.ModuleDict()).parameters())
    return ids


def directly_trained(model: nn.Module) -> dict[str, nn.Parameter]:
    """Trainable parameters that are not LoRA factors (all of them under full fine-tuning)."""
    skip = lora_parameter_ids(model)
    return {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) not in skip}
