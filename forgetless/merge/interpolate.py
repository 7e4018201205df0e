"""Weight-space interpolation between a base model and its fine-tuned version (WiSE-FT).

    theta(alpha) = (1 - alpha) * theta_0 + alpha * theta_ft

alpha = 0 is the base model, alpha = 1 the fine-tuned one; in between usually keeps most of the
new skill and gives back much of what fine-tuning broke (Wortsman et al. 2022, "Robust fine-tuning
of zero-shot models"). For LoRA, theta_ft = theta_0 + s * B A in every adapted layer, so

    theta(alpha) = theta_0 + (alpha * s) * B A

i.e. interpolating is scaling the adapter: no copy of theta_0 is needed and the result is exact.

`alpha` may be a function of the parameter name (`per_layer`), to mix lower and upper blocks
differently. Endpoints are exact: alpha = 0 gives back theta_0 bit for bit and alpha = 1 theta_ft.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from functools import partial
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from forgetless.errors import ForgetlessError

Alpha = float | Callable[[str], float]  # one alpha, or one per parameter / LoRA module name

_BLOCK_INDEX = re.compile(r"(?:^|\.)(?:layers|h|blocks|block|layer)\.(\d+)(?:\.|$)")
_EMBEDDING = re.compile(r"(?:^|\.)(?:embed_tokens|embed_positions|embeddings|wte|wpe|tok_embeddings)(?:\.|$)")


def alpha_for(alpha: Alpha, name: str) -> float:
    """The mixing weight of parameter `name`: `alpha` itself, or `alpha(name)`; must be finite."""
    value = float(alpha(name) if callable(alpha) else alpha)
    if not math.isfinite(value):
        raise ForgetlessError(f"alpha for '{name}' is {value}", hint="use a finite number, e.g. 0.5")
    return value


def interpolate_tensor(base: Tensor, tuned: Tensor, alpha: float) -> Tensor:
    """(1 - alpha) * base + alpha * tuned, in at least float32, returned in tuned's dtype.

    Computed as torch.lerp(base, tuned, alpha) = base + alpha * (tuned - base), the same value in
    exact arithmetic, one kernel and no temporaries. alpha = 0 returns `base` and alpha = 1 returns
    `tuned` themselves (no arithmetic), so the endpoints are exact also in bfloat16.
    """
    if alpha == 0.0:
        return base
    if alpha == 1.0:
        return tuned
    if tuned.dtype in (torch.float32, torch.float64):
        return torch.lerp(base, tuned, alpha)
    return torch.lerp(base.float(), tuned.float(), alpha).to(tuned.dtype)


@torch.no_grad()
def interpolate_into(out: Tensor, base: Tensor, tuned: Tensor, alpha: float) -> None:
    """out <- interpolate_tensor(base, tuned, alpha), bit for bit, written in place (no copy for float32)."""
    if alpha not in (0.0, 1.0) and out.dtype == tuned.dtype and out.dtype in (torch.float32, torch.float64):
        torch.lerp(base, tuned, alpha, out=out)
    else:
        out.copy_(interpolate_tensor(base, tuned, alpha))


def check_same_parameters(base: Mapping[str, Tensor], tuned: Mapping[str, Tensor]) -> None:
    """Both state dicts must name the same parameters with the same shapes (else they cannot be mixed)."""
    missing, extra = sorted(set(tuned) - set(base)), sorted(set(base) - set(tuned))
    if missing or extra:
        first = (missing or extra)[0]
        raise ForgetlessError(
            f"base and tuned models have different parameters ({len(missing)} only in tuned, {len(extra)} only in "
            f"base; e.g. '{first}')", hint="pass the base model this one was fine-tuned from (--base)")
    for name, t in tuned.items():
        if base[name].shape != t.shape:
            raise ForgetlessError(f"'{name}' has shape {tuple(base[name].shape)} in the base but {tuple(t.shape)} "
                                  "in the tuned model", hint="a resized vocabulary cannot be interpolated")


def interpolate_state(base: Mapping[str, Tensor], tuned: Mapping[str, Tensor], alpha: Alpha) -> dict[str, Tensor]:
    """theta[name] = (1 - a) * base[name] + a * tuned[name], with a = alpha or alpha(name).

    Pure: inputs are not modified; where a is 0 or 1 the output holds the input tensor itself.
    """
    check_same_parameters(base, tuned)
    return {name: interpolate_tensor(base[name], t, alpha_for(alpha, name)) for name, t in tuned.items()}


def block_index(name: str) -> int | None:
    """The transformer block a parameter belongs to ('model.layers.3.mlp...' -> 3), or None."""
    found = _BLOCK_INDEX.search(name)
    return int(found.group(1)) if found else None


def layer_alpha(name: str, lower_alpha: float, upper_alpha: float, n_layers: int, split: int | None = None) -> float:
    """lower_alpha for blocks 0 .. split-1 and the embeddings, upper_alpha for blocks split .. n_layers-1
    and everything after them (final norm, lm_head). split defaults to n_layers // 2.

    Lin et al. 2024 ("Mitigating the alignment tax of RLHF") found averaging the lower layers
    recovers the most general ability; e.g. lower_alpha = 0.3, upper_alpha = 1 keeps the upper
    blocks fine-tuned.
    """
    cut = n_layers // 2 if split is None else split
    if not 0 <= cut <= n_layers:
        raise ForgetlessError(f"split {cut} is outside 0..{n_layers}", hint=f"the model has {n_layers} blocks")
    index = block_index(name)
    if index is None:
        return lower_alpha if _EMBEDDING.search(name) else upper_alpha
    return lower_alpha if index < cut else upper_alpha


def per_layer(lower_alpha: float, upper_alpha: float, n_layers: int, split: int | None = None) -> Callable[[str], float]:
    """`layer_alpha` with everything but the name fixed: an `Alpha` for `interpolate_state` / `set_alpha`."""
    layer_alpha("", lower_alpha, upper_alpha, n_layers, split)  # validates split now, not at first use
    return partial(_layer_alpha_by_name, lower_alpha=lower_alpha, upper_alpha=upper_alpha, n_layers=n_layers,
                   split=split)


def _layer_alpha_by_name(name: str, *, lower_alpha: float, upper_alpha: float, n_layers: int, split: int | None) -> float:
    return layer_alpha(name, lower_alpha, upper_alpha, n_layers, split)


def count_blocks(model: nn.Module) -> int:
    """Number of transformer blocks, from the (base) model's config."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    n = getattr(getattr(inner, "config", None), "num_hidden_layers", None)
    if not n:
        raise ForgetlessError("cannot tell how many transformer blocks this model has (no num_hidden_layers)",
                              hint="per-layer mixing needs it; use one alpha instead")
    return int(n)


def is_lora(model: Any) -> bool:
    """True for a PEFT model carrying LoRA adapters."""
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


class Interpolator(ABC):
    """Sets a model's weights to theta(alpha) in place, for any alpha, without reloading anything.

    `Interpolator.for_model` picks the kind: `WeightInterpolator` (full fine-tuning; holds theta_0
    and theta_ft of the trained parameters only) or `LoraScaler` (PEFT LoRA; scales the adapter).
    """

    kind: str
    names: list[str]  # trained parameters (full) or LoRA module names, relative to the base model

    @abstractmethod
    def set_alpha(self, alpha: Alpha) -> None:
        """Make the model theta(alpha); alpha = 1 restores the fine-tuned model exactly."""

    @staticmethod
    def for_model(model: nn.Module, base: Mapping[str, Tensor] | nn.Module | None = None) -> Interpolator:
        """A `LoraScaler` for a PEFT model, else a `WeightInterpolator` against `base` (required then)."""
        if is_lora(model):
            return LoraScaler(model)
        if base is None:
            raise ForgetlessError("interpolating a fully fine-tuned model needs its base model's weights",
                                  hint="pass --base MODEL (the model it was fine-tuned from)")
        return WeightInterpolator(model, base)


class WeightInterpolator(Interpolator):
    """Full fine-tuning: keeps theta_0 and theta_ft of only the parameters that differ.

    Memory: two extra copies of the trained parameters (frozen ones are neither copied nor touched).
    """

    kind = "full"

    def __init__(self, model: nn.Module, base: Mapping[str, Tensor] | nn.Module):
        base_params = dict(base.named_parameters()) if isinstance(base, nn.Module) else dict(base)
        params = dict(model.named_parameters())  # tied weights appear once
        check_same_parameters(base_params, params)
        self.model = model
        self.base: dict[str, Tensor] = {}
        self.tuned: dict[str, Tensor] = {}
        self._params: dict[str, nn.Parameter] = {}
        with torch.no_grad():
            for name, p in params.items():
                b = base_params[name].detach().to(device=p.device, dtype=p.dtype)
                if torch.equal(b, p):
                    continue
                self.base[name], self.tuned[name], self._params[name] = b, p.detach().clone(), p
        self.names = list(self._params)
        if not self.names:
            raise ForgetlessError("the tuned model's weights are identical to the base model's",
                                  hint="check that --tuned points at the fine-tuned model")

    @torch.no_grad()
    def set_alpha(self, alpha: Alpha) -> None:
        for name, p in self._params.items():
            interpolate_into(p, self.base[name], self.tuned[name], alpha_for(alpha, name))


class LoraScaler(Interpolator):
    """PEFT LoRA: sets every LoRA layer's scaling to alpha times the scaling it was trained with.

    The trained scaling is PEFT's rule for each layer, with its own rank and lora_alpha (per-module
    patterns included): lora_alpha / r, or lora_alpha / sqrt(r) for rsLoRA. An adapter saved with
    lora_alpha multiplied by alpha loads with the same scaling, so `merge` writes the model the sweep
    measured. alpha = 0 adds exactly zero (the adapter-disabled model), alpha = 1 restores the
    trained scaling.
    """

    kind = "lora"

    def __init__(self, model: nn.Module, adapter: str | None = None):
        from peft.tuners.lora import LoraLayer

        self.model = model
        self.adapter = adapter or model.active_adapter
        check_scalable(model.peft_config[self.adapter])
        prefix = "base_model.model."
        self.layers: dict[str, LoraLayer] = {
            name.removeprefix(prefix): module for name, module in model.named_modules()
            if isinstance(module, LoraLayer) and self.adapter in module.scaling}
        if not self.layers:
            raise ForgetlessError(f"adapter '{self.adapter}' has no LoRA layers")
        self.names = list(self.layers)
        self.trained = {name: trained_scaling(layer, self.adapter) for name, layer in self.layers.items()}

    def set_alpha(self, alpha: Alpha) -> None:
        for name, layer in self.layers.items():
            layer.scaling[self.adapter] = alpha_for(alpha, name) * self.trained[name]

    def lora_alphas(self, alpha: Alpha) -> dict[str, float]:
        """Per module: the lora_alpha a saved adapter needs for theta(alpha), alpha(name) * lora_alpha."""
        return {name: alpha_for(alpha, name) * layer.lora_alpha[self.adapter] for name, layer in self.layers.items()}


def trained_scaling(layer: Any, adapter: str) -> float:
    """The scaling PEFT gives a LoRA layer when it builds it: lora_alpha / r, or lora_alpha / sqrt(r) (rsLoRA)."""
    r = layer.r[adapter]
    return layer.lora_alpha[adapter] / (math.sqrt(r) if layer.use_rslora.get(adapter, False) else r)


def check_scalable(config: Any) -> None:
    """Scaling interpolates only plain LoRA; parts trained outside the low-rank update would not move."""
    if str(getattr(config, "peft_type", "")).split(".")[-1].upper() != "LORA":
        raise ForgetlessError(f"only LoRA adapters can be interpolated, not {config.peft_type}")
    problems = [what for what, present in (
        ("use_dora", getattr(config, "use_dora", False)),
        ("modules_to_save", getattr(config, "modules_to_save", None)),
        ("trainable_token_indices", getattr(config, "trainable_token_indices", None)),
    ) if present]
    if problems:
        raise ForgetlessError(f"this adapter sets {', '.join(problems)}: scaling the low-rank update would not "
                              "interpolate those parts", hint="merge the adapter into a full model first "
                              "(peft merge_and_unload, save_pretrained) and interpolate that against the base")
