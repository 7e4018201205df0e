"""EWC: elastic weight consolidation (Kirkpatrick et al., 2017).

    penalty = (lambda / 2) * sum_i F_i * (theta_i - theta0_i)^2

theta0: the weights at setup (the base model); F: the diagonal Fisher of the base model on
reference data (what the model already knows), so weights that mattered for it are held in place
and unimportant ones are free to move.

With LoRA the base weight W is frozen and A, B are trained; the penalty is taken on the effective
update of each adapted weight, sum F_W * (scale * B @ A)^2, with F_W the Fisher of the base weight
W, computed at setup with the adapters switched off. Memory: one Fisher tensor per trained or
adapted weight (as large as W, unlike A and B), plus a copy of directly trained parameters.

The empirical Fisher is cached under the forgetless home (`fisher_cache`), keyed by the base
weights, the reference tokens and the settings: a second run on the same base and data, or a
`--resume`, reads it instead of spending minutes on per-example gradients again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from forgetless.errors import ForgetlessError
from forgetless.home import forgetless_home
from forgetless.models.adapters import adapters_disabled
from forgetless.train.fisher import STORAGE_DTYPES, diagonal_fisher, load_fisher, normalize_fisher, save_fisher
from forgetless.train.regularizers.anchors import WeightAnchors
from forgetless.train.regularizers.base import REGULARIZERS, Batch, Regularizer, RegularizerConfig, zero_like_params
from forgetless.train.regularizers.lora import canonical_name
from forgetless.train.regularizers.sharded import shard_all


class EWCConfig(RegularizerConfig):
    """Elastic weight consolidation."""

    weight_field: ClassVar[str] = "lambda_"
    section: ClassVar[str] = "regularizer.ewc"

    lambda_: float = Field(1.0, ge=0, alias="lambda", description="Penalty weight (lambda >= 0); 0 turns EWC off.")
    fisher_normalize: Literal["none", "mean", "max"] = Field(
        "mean", description="Rescale the Fisher so its mean (or max) is 1. With 'mean', lambda is on the scale of "
        "l2sp's alpha (EWC = L2-SP reweighted by importance) and comparable across models and data.",
    )
    fisher_max_examples: int | None = Field(256, gt=0, description="Reference examples used for the Fisher.")
    fisher_empirical: bool = Field(True, description="Labels from the data (True) or sampled from the model (False).")
    fisher_chunk_size: int = Field(8, gt=0, description="Examples per vmap call when computing the Fisher on an accelerator "
                                   "(on CPU the Fisher takes one example at a time: faster there).")
    fisher_cache: bool = Field(True, description="Keep the empirical Fisher under the forgetless home, keyed by the base "
                               "weights, the reference tokens and these settings; a later run or --resume reuses it.")
    fisher_dtype: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="Storage dtype of the cached Fisher (bf16/fp16 halve the file; the penalty uses these values).")


@REGULARIZERS.register("ewc")
class EWC(Regularizer):
    """EWC; pass `fisher=` (e.g. from `load_fisher`) to skip computing it at setup."""

    name = "ewc"
    reads_scored_logits = True  # the penalty reads weights, never the outputs
    weights_only = True
    config_class = EWCConfig
    config: EWCConfig

    def __init__(self, config: EWCConfig | dict[str, Any] | None = None, *, fisher: dict[str, Tensor] | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.given_fisher = fisher
        self.fisher: dict[str, Tensor] = {}  # model's weight name -> F, on the weight's device

    def setup(self, model: nn.Module, *, reference_batches: Iterable[Batch] | None = None) -> None:
        self.anchors = WeightAnchors(model)
        fisher = self.given_fisher
        if fisher is None:
            fisher = self._compute_fisher(model, reference_batches)
        by_key = {canonical_name(n): f for n, f in fisher.items()}
        missing = [n for n in self.anchors.names() if canonical_name(n) not in by_key]
        if missing:
            raise ForgetlessError(
                f"the Fisher has no entry for {len(missing)} trained weight(s), e.g. {missing[0]}",
                where=self.config.section, hint="compute it on the same model and trainable parameters",
            )
        weights = dict(model.named_parameters())
        used = {n: by_key[canonical_name(n)].to(weights[n].device, torch.float32) for n in self.anchors.names()}
        negative = next((n for n, f in used.items() if bool((f < 0).any())), None)
        if negative is not None:  # a mean of squares never is; the fused penalty relies on F >= 0
            raise ForgetlessError(f"the Fisher of '{negative}' has negative entries", where=self.config.section,
                                  hint="a diagonal Fisher is a mean of squared gradients: check where it came from")
        self.fisher = normalize_fisher(used, self.config.fisher_normalize)  # over the trained weights only
        self.ready = True

    def _compute_fisher(self, model: nn.Module, batches: Iterable[Batch] | None) -> dict[str, Tensor]:
        """The Fisher of the weights EWC anchors, from the cache when this exact one was computed before."""
        if batches is None:
            raise ForgetlessError(
                "EWC needs reference batches to compute the Fisher", where=self.config.section,
                hint="pass reference_batches= (data the base model should keep doing well on) or fisher=",
            )
        batches = _first_examples(batches, self.config.fisher_max_examples)  # may be read twice
        named = dict(model.named_parameters())
        groups = [({s.base_name: named[s.base_name] for s in self.anchors.sites}, True),  # base weights W: adapters off
                  (dict(self.anchors.params), False)]
        cached = self.config.fisher_cache and self.config.fisher_empirical  # a sampled Fisher is drawn anew each time
        path = fisher_cache_path(model, groups, batches, self.config) if cached else None
        if path is not None and path.is_file():
            return load_fisher(path)[0]
        kwargs = {
            "max_examples": self.config.fisher_max_examples, "empirical": self.config.fisher_empirical,
            "chunk_size": self.config.fisher_chunk_size,
        }
        fisher: dict[str, Tensor] = {}
        for params, adapters_off in groups:
            if params:
                with adapters_disabled(model) if adapters_off else nullcontext():
                    fisher |= diagonal_fisher(model, batches, params=params, **kwargs)
        if path is None:
            return fisher
        save_fisher(path, fisher, {"examples": self.config.fisher_max_examples}, dtype=self.config.fisher_dtype)
        storage = STORAGE_DTYPES[self.config.fisher_dtype]  # use what a later run reads back, without reading it
        return {n: f.to(storage).float() for n, f in fisher.items()}

    def penalty(self, model: nn.Module, batch: Batch | None = None, outputs: Any = None) -> Tensor:
        self._require_setup()
        if self.anchors.follow_shards(model):  # FSDP2 sharded the model after setup: keep this process's shard
            self.fisher = shard_all(self.fisher, dict(model.named_parameters()))
        if not self.anchors.names():
            return zero_like_params(model)
        return 0.5 * self.config.weight * self.anchors.quadratic(self.fisher)


def fisher_cache_path(model: nn.Module, groups: list[tuple[dict[str, Tensor], bool]], batches: list[Batch],
                      config: EWCConfig) -> Path:
    """forgetless home / fisher / <sha256 of the base weights, which of them get a Fisher, the reference
    tokens and the settings>. LoRA factors are left out: the base Fisher is taken with them off."""
    digest = hashlib.sha256()
    settings = config.model_dump(include={"fisher_max_examples", "fisher_empirical", "fisher_dtype"})
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update(json.dumps([[sorted(params), off] for params, off in groups]).encode())
    for name, p in model.named_parameters():
        if "lora_" not in name:
            digest.update(f"{name}|{p.dtype}|{tuple(p.shape)}".encode())
            digest.update(p.detach().contiguous().view(torch.uint8).cpu().numpy())
    for batch in batches:
        for key in sorted(batch):
            digest.update(key.encode())
            digest.update(batch[key].detach().to("cpu", torch.int64).contiguous().numpy())
    return forgetless_home() / "fisher" / f"{digest.hexdigest()[:24]}.safetensors"


def _first_examples(batches: Iterable[Batch], limit: int | None) -> list[Batch]:
    """The batches holding the first `limit` examples (all if None), so a loader is read once."""
    kept, seen = [], 0
    for batch in batches:
        kept.append(batch)
        seen += next(iter(batch.values())).shape[0]
        if limit is not None and seen >= limit:
            break
    return kept
