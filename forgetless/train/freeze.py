"""Which weights train: frozen bottom blocks for full fine-tuning, LoRA adapters otherwise.

Lower transformer blocks hold general features (token and syntax patterns) that a narrow domain
rarely needs to change; freezing them is the cheapest protection against forgetting. LoRA goes
further: the base stays frozen and only small low-rank updates train — which this module checks
rather than trusts, since one stray trainable base weight silently turns LoRA into full
fine-tuning of that weight.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from forgetless.errors import ForgetlessError
from forgetless.train.config import FreezeSection, LoraSection


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's list of transformer blocks (the ModuleList as long as `num_hidden_layers`)."""
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and (n is None or len(module) == n):
            return module
    raise ForgetlessError(f"cannot find the transformer blocks of {type(model).__name__}",
                          hint="set freeze.layers: 0 for this model")


def freeze_bottom(model: nn.Module, freeze: FreezeSection) -> list[str]:
    """Freeze the bottom `freeze.layers` blocks (and embeddings if asked); returns frozen parameter names."""
    frozen: list[nn.Module] = []
    if freeze.layers:
        blocks = transformer_blocks(model)
        if freeze.layers > len(blocks):
            raise ForgetlessError(f"freeze.layers is {freeze.layers} but the model has {len(blocks)} blocks",
                                  hint=f"use at most {len(blocks) - 1}")
        frozen += list(blocks[: freeze.layers])
    if freeze.embeddings:
        frozen.append(model.get_input_embeddings())
    ids = {id(p) for m in frozen for p in m.parameters()}
    names = []
    for name, p in model.named_parameters():
        if id(p) in ids:
            p.requires_grad_(False)
            names.append(name)
    return names


def apply_lora(model: nn.Module, lora: LoraSection, freeze: FreezeSection) -> Any:
    """Wrap the model with PEFT LoRA adapters (none in the bottom `freeze.layers` blocks)."""
    from peft import LoraConfig, get_peft_model

    kwargs: dict[str, Any] = {}
    targets = lora.target_modules
    if freeze.layers:
        n = len(transformer_blocks(model))
        if freeze.layers >= n:
            raise ForgetlessError(f"freeze.layers is {freeze.layers}: no block of the {n} would get adapters",
                                  hint=f"use at most {n - 1}")
        kwargs["layers_to_transform"] = list(range(freeze.layers, n))
        if targets == "all-linear":  # PEFT takes a layer subset only with explicit module names
            targets = block_linear_names(model)
    config = LoraConfig(task_type="CAUSAL_LM", r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=targets, **kwargs)
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as e:
        raise ForgetlessError(f"cannot add LoRA adapters: {str(e).splitlines()[0][:200]}",
                              hint="check lora.target_modules against the model's module names") from None
    check_base_frozen(peft_model)
    return peft_model


def block_linear_names(model: nn.Module) -> list[str]:
    """Short names of the linear layers inside the transformer blocks (what 'all-linear' means there)."""
    names = {name.rsplit(".", 1)[-1] for name, m in transformer_blocks(model).named_modules()
             if isinstance(m, nn.Linear)}
    return sorted(names)


def check_base_frozen(model: nn.Module) -> None:
    """Every parameter that is not a LoRA weight must be frozen; otherwise refuse to train."""
    loose = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
    if loose:
        raise ForgetlessError(f"{len(loose)} base weights are trainable under LoRA (e.g. '{loose[0]}')",
                              hint="this would fine-tune them fully; check modules_to_save / the PEFT version")
    if not any(p.requires_grad for p in model.parameters()):
        raise ForgetlessError("no LoRA weight is trainable", hint="check lora.target_modules")


def trainable_summary(model: nn.Module) -> dict[str, Any]:
    """Counts of trainable and total parameters (shared tensors counted once)."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    share = trainable / total if total else 0.0
    return {"trainable": trainable, "total": total, "share": share,
            "text": f"{trainable:,} of {total:,} parameters trainable ({100 * share:.2f}%)"}
