"""The memory a training run needs per device, before any weight is read: `forgetless train CONFIG --plan`.

The model is built from its config alone on the meta device (a built-in's GGUF header, a folder's
config.json, or a hub id's config.json) and given the run's LoRA adapters and frozen blocks, so every
parameter count is exact. Each line is then a count times a width in bytes; only the activations are
an estimate, per token and block, from what a decoder block keeps for its backward pass (BENCHMARKS.md
compares the plan with measured peaks).

The peak is the largest of three moments: computing EWC's Fisher before the first step; the end of a
forward pass from the second step on (activations, the penalties' per-weight tensors, and the AdamW
state the first step created; gradients are freed between steps and grow only as activations are
released); and the optimizer's step (gradients, AdamW state, the temporaries of its update). The
weights, the Fisher, the anchors and a reference model are held throughout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from forgetless.errors import ForgetlessError
from forgetless.train.config import TrainConfig

GIB = 1024**3
# Elements a decoder block keeps per token for its backward pass, in units of the hidden size h, the
# key/value width kv, the MLP width i: norms, attention inputs/outputs, q/k/v with rotary, the gated MLP
ACT_HIDDEN, ACT_KV, ACT_MLP = 7, 3, 4
LOGIT_COPIES = 3  # logits, their log-softmax, and its gradient, at each scored position
KL_LOGIT_COPIES = 4  # a live KL adds the base's logits and log-softmax, the model's log-softmax, a gradient
ADAMW_TEMPORARIES = 1  # on an accelerator AdamW's multi-tensor update copies the second moment once (its sqrt);
# on a CPU it updates one tensor at a time: two copies of the largest (not measured on a GPU)
FISHER_BYTES = 12  # per anchored weight while the Fisher is computed: a float64 total and a batch's sum, plus
# 4 per example whose gradient is held: one on a CPU (a loop), `fisher_chunk_size` on an accelerator (vmap)


@dataclass(frozen=True)
class PlanLine:
    item: str
    bytes: int
    how: str


@dataclass
class MemoryPlan:
    """Peak memory per device for one training config."""

    model: str
    method: str
    dtype: str
    device: str
    held: list[PlanLine]  # for the whole run
    moments: dict[str, list[PlanLine]]  # what else is held at each moment that can be the peak
    capacity: int | None = None  # the device's memory, when it is on this machine
    fixes: list[str] = field(default_factory=list)

    def moment_bytes(self, moment: str) -> int:
        return sum(x.bytes for x in self.moments[moment])

    @property
    def peak_moment(self) -> str:
        return max(self.moments, key=self.moment_bytes)

    @property
    def peak(self) -> int:
        return sum(x.bytes for x in self.held) + self.moment_bytes(self.peak_moment)

    @property
    def fits(self) -> bool | None:
        return None if self.capacity is None else self.peak <= self.capacity

    def render(self) -> str:
        lines = [f"memory plan: {self.model}, {self.method}, {self.dtype} weights, on {self.device}"]
        for title, part in (("held throughout", self.held), *((f"during {m}", p) for m, p in self.moments.items())):
            lines.append(f"  {title}:")
            lines += [f"    {x.item:<18} {_gib(x.bytes):>10}  {x.how}" for x in part]
        lines.append(f"  peak {_gib(self.peak)} per device, during {self.peak_moment}"
                     + ("" if self.capacity is None else f"; the device has {_gib(self.capacity)}"))
        if self.fits is False:
            lines.append("  it does not fit. Fixes, largest saving first:")
            lines += [f"    - {fix}" for fix in self.fixes]
        return "\n".join(lines)


def _gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


def model_config(spec: str) -> Any:
    """The model's transformers config, read without its weights."""
    from transformers import AutoConfig

    from forgetless.models.builtin import BUILTINS
    from forgetless.models.loading import resolve

    gguf = BUILTINS.get(spec).gguf_path() if spec in BUILTINS else Path(spec).expanduser()
    if gguf.suffix == ".gguf" and gguf.is_file():  # the GGUF header holds the config: nothing to dequantize
        return AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    location, source, _ = resolve(spec)
    if source == "run":
        raise ForgetlessError("a run folder is not a base model", where=spec, hint="plan with its base model")
    return AutoConfig.from_pretrained(location)


def meta_model(config: TrainConfig) -> Any:
    """The run's model on the meta device: its parameters have shapes and dtypes, and no storage."""
    from transformers import AutoModelForCausalLM

    from forgetless.train.recipe import apply_method

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config(config.model), dtype=torch.float32)
        return apply_method(config, model)


def device_memory(device: torch.device) -> int | None:
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(device.index or 0).total_memory
    if device.type == "cpu":
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return None


def plan_memory(config: TrainConfig, device: torch.device | None = None) -> MemoryPlan:
    """The plan for `config` on `device` (the config's own by default)."""
    from forgetless.models.device import pick_device
    from forgetless.train.recipe import training_dtype
    from forgetless.train.regularizers import lora_sites

    device = device or pick_device(config.device)
    model = meta_model(config)
    dtype = getattr(torch, training_dtype(config, device))
    width = torch.finfo(dtype).bits // 8
    params = list(model.parameters())
    trained = [p for p in params if p.requires_grad]
    n_all, n_trained = sum(p.numel() for p in params), sum(p.numel() for p in trained)
    adapter = config.method == "lora"
    trained_width = 4 if adapter else width  # PEFT keeps LoRA factors in float32
    weights = (n_all - n_trained) * width + n_trained * trained_width
    names = {s.base_name for s in lora_sites(model)} if adapter else set()
    anchored = sum(p.numel() for n, p in model.named_parameters() if n in names) if adapter else n_trained
    regs = {r.name: r.resolved() for r in config.regularizers if r.resolved_weight() > 0}  # defaults filled in

    held = [PlanLine("weights", weights, f"{n_all / 1e6:.1f}M parameters, {n_trained / 1e6:.2f}M trained")]
    if "ewc" in regs:
        held.append(PlanLine("Fisher", anchored * 4, f"float32, one per {'adapted base' if adapter else 'trained'} "
                                                     f"weight ({anchored / 1e6:.1f}M)"))
    if {"ewc", "l2sp"} & set(regs) and not adapter:
        held.append(PlanLine("anchors", n_trained * trained_width, "a copy of the trained weights at the start"))
    live_kl = "kl" in regs and not regs["kl"].top_k  # the base runs beside the model
    if live_kl and not adapter:  # LoRA's base is the model with its adapters off
        held.append(PlanLine("reference model", n_all * width, "a frozen copy of the base model for KL"))

    backward = [PlanLine("activations", activation_bytes(model.config, config, dtype, device, live_kl),
                         f"{config.batch_size} x {config.max_length} tokens through {model.config.num_hidden_layers} "
                         "blocks" + (", recomputed per block" if config.gradient_checkpointing else "")
                         + (", with the base model's logits for KL" if live_kl else ""))]
    kept = {"ewc": 2 * anchored if adapter else anchored, "l2sp": 0 if adapter else n_trained}  # F * delta, delta
    penalty = sum(kept[name] for name in ("ewc", "l2sp") if name in regs)
    if penalty:
        backward.append(PlanLine("penalty tensors", penalty * 4, "what EWC / L2-SP keep per weight for the backward"))
    state = PlanLine("optimizer state", 2 * n_trained * trained_width, "AdamW's two moments")
    backward.append(state)
    if device.type == "cpu":
        update = PlanLine("optimizer update", 2 * max(p.numel() for p in trained) * trained_width,
                          "AdamW on a CPU: one tensor at a time, two copies of the largest")
    else:
        update = PlanLine("optimizer update", ADAMW_TEMPORARIES * n_trained * trained_width,
                          "multi-tensor AdamW: a copy of the second moment")
    moments = {"a backward pass after the first step": backward,
               "the optimizer step": [PlanLine("gradients", n_trained * trained_width, "one per trained weight"),
                                      state, update]}
    if "ewc" in regs:
        at_once = 1 if device.type == "cpu" else regs["ewc"].fisher_chunk_size
        moments = {"the Fisher's computation": [
            PlanLine("Fisher sums", anchored * (FISHER_BYTES + 4 * at_once),
                     f"a float64 total, a batch's sum, {at_once} example gradient{'s' if at_once > 1 else ''}")],
                   **moments}
    plan = MemoryPlan(model=config.model, method=config.method, dtype=str(dtype).removeprefix("torch."),
                      device=str(device), held=held, moments=moments, capacity=device_memory(device))
    plan.fixes = fixes(plan, config)
    return plan


def activation_bytes(model_config: Any, config: TrainConfig, dtype: torch.dtype, device: torch.device,
                     live_kl: bool = False) -> int:
    """What the forward pass keeps for the backward pass, per device, at full length (`live_kl`: the base
    model's logits and both log-softmaxes too)."""
    from forgetless.train.recipe import training_attention

    c = model_config
    h, layers, vocab = c.hidden_size, c.num_hidden_layers, c.vocab_size
    heads = c.num_attention_heads
    kv = (getattr(c, "num_key_value_heads", None) or heads) * (getattr(c, "head_dim", None) or h // heads)
    mlp = getattr(c, "intermediate_size", 4 * h)
    tokens = config.batch_size * config.max_length
    autocast = dtype == torch.float32 and device.type == "cuda"  # bf16 autocast keeps activations in 2 bytes
    width = 2 if autocast or dtype != torch.float32 else 4
    per_block = ACT_HIDDEN * h + ACT_KV * kv + ACT_MLP * mlp
    if training_attention(config) == "eager":  # the attention probabilities, T per head and token
        per_block += heads * config.max_length
    if config.method == "lora" and config.lora.dropout > 0:  # each adapted layer keeps its dropped input
        per_block += 6 * h + mlp
    blocks = 1 if config.gradient_checkpointing else layers
    kept = tokens * (per_block * blocks + (h * layers if config.gradient_checkpointing else 0)) * width
    logits = tokens * vocab * (LOGIT_COPIES + KL_LOGIT_COPIES * live_kl) * 4  # float32, at each scored position
    return kept + logits


def fixes(plan: MemoryPlan, config: TrainConfig) -> list[str]:
    """What to change when the plan does not fit, from the line that would save the most."""
    by_item = {x.item: x.bytes for part in (plan.held, *plan.moments.values()) for x in part}
    out: list[tuple[int, str]] = []
    if "Fisher" in by_item:
        out.append((by_item["Fisher"] // 2, "EWC's Fisher in bfloat16 (fisher_dtype: bfloat16), or L2-SP instead "
                                            "(no Fisher)"))
    if "reference model" in by_item:
        out.append((by_item["reference model"], "KL on precomputed targets (top_k: 128): no reference model"))
    if not config.gradient_checkpointing:
        out.append((by_item["activations"] * 3 // 4, "gradient_checkpointing: true (recompute activations)"))
    if config.batch_size > 1:
        steps = 2 * config.gradient_accumulation_steps
        out.append((by_item["activations"] // 2, f"batch_size: {config.batch_size // 2} with "
                                                  f"gradient_accumulation_steps: {steps}"))
    if config.method == "full":
        out.append((by_item["optimizer state"], "method: lora (no full-size gradients or optimizer state)"))
        out.append((by_item["weights"] // 2, "FSDP2 over N devices: weights, gradients, optimizer state, Fisher and "
                                             "anchors divide by N (docs/scale-out.md)"))
    return [text for _, text in sorted(out, key=lambda x: -x[0])]
