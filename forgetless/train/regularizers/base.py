"""The regularizer interface: a config, `setup` (anchors, Fisher) and `penalty` (a scalar).

Training reads as one recipe:

    loss = task_loss + sum(reg.penalty(model, batch, outputs) for reg in regularizers)

each penalty already multiplied by its own weight, and logged on its own under `reg.name`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from torch import Tensor, nn

from forgetless.errors import ForgetlessError
from forgetless.registry import Registry

Batch = dict[str, Tensor]

REGULARIZERS: Registry[type[Regularizer]] = Registry("regularizer")


def _describe(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors:
        field = ".".join(str(x) for x in err["loc"]) or "config"
        value = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        parts.append(f"{field}: {err['msg']}{value}")
    return "; ".join(parts)


class RegularizerConfig(BaseModel):
    """Base of every regularizer's config; all problems are reported at once as a ForgetlessError."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True, frozen=True)
    weight_field: ClassVar[str] = ""
    section: ClassVar[str] = "regularizer"

    def __init__(self, **data: Any):
        try:
            super().__init__(**data)
        except ValidationError as e:
            field = type(self).model_fields.get(self.weight_field)
            weight_name = (field.alias if field else None) or self.weight_field or "weight"
            bad_weight = any(err["loc"][:1] in ((weight_name,), (self.weight_field,)) for err in e.errors())
            hint = f"{weight_name} (or weight) must be a number >= 0; 0 turns it off" if bad_weight else "see --help for the options"
            raise ForgetlessError(_describe(e.errors()), where=self.section, hint=hint) from None

    @model_validator(mode="before")
    @classmethod
    def _generic_weight(cls, data: Any) -> Any:
        """`weight` is accepted for every regularizer as another name of its own (lambda/alpha/beta)."""
        if isinstance(data, dict) and "weight" in data:
            field = cls.model_fields[cls.weight_field]
            names = {cls.weight_field, field.alias}
            if names & set(data):
                raise ValueError(f"give either weight or {field.alias or cls.weight_field}, not both")
            data = {k: v for k, v in data.items() if k != "weight"} | {field.alias or cls.weight_field: data["weight"]}
        return data

    @property
    def weight(self) -> float:
        return float(getattr(self, self.weight_field))


class Regularizer:
    """One anti-forgetting term. Subclasses set `name` and `config_class` and implement both methods."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[RegularizerConfig]] = RegularizerConfig
    # True when `penalty` accepts `forgetless.train.scored.ScoredOutputs` (logits at the scored positions
    # only) or never reads the outputs; the trainer then skips the output head everywhere else
    reads_scored_logits: ClassVar[bool] = False
    # True when `penalty` reads weights only, never the batch or the outputs: the trainer then computes it
    # before the forward, while FSDP2 holds every weight as a shard (`sharded.py`)
    weights_only: ClassVar[bool] = False

    def __init__(self, config: RegularizerConfig | dict[str, Any] | None = None, **overrides: Any):
        if config is None or isinstance(config, dict):
            config = self.config_class(**{**(config or {}), **overrides})
        elif overrides:
            config = config.model_copy(update=overrides)
        self.config = config
        self.ready = False

    def setup(self, model: nn.Module, *, reference_batches: Iterable[Batch] | None = None) -> None:
        """Snapshot what the penalty compares against (the base model), e.g. anchors and Fisher."""
        raise NotImplementedError

    def prepare_examples(self, model: nn.Module, examples: list[dict[str, Any]], collate: Any) -> None:
        """Called once with the tokenized training stream, before the first step (the model is still the base):
        a regularizer may attach per-example data that its penalty reads from the batch."""

    def prepare(self, accelerator: Any) -> None:
        """Called once the Trainer's accelerator exists. A regularizer holding a model of its own (a frozen
        reference) prepares it here, so that it runs under the trained model's mixed precision."""

    def penalty(self, model: nn.Module, batch: Batch | None = None, outputs: Any = None) -> Tensor:
        """A scalar, already multiplied by the config's weight; differentiable in trained params."""
        raise NotImplementedError

    def _require_setup(self) -> None:
        if not self.ready:
            raise ForgetlessError(f"regularizer '{self.name}' used before setup()", hint="call setup(model) first")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


def build_regularizer(name: str, config: dict[str, Any] | None = None) -> Regularizer:
    """The regularizer registered as `name`, configured from a plain dict (YAML/CLI)."""
    return REGULARIZERS.get(name)(config or {})


def zero_like_params(model: nn.Module) -> Tensor:
    """A float32 zero on the model's device (the penalty of a regularizer with nothing to anchor)."""
    p = next(model.parameters(), None)
    return torch.zeros((), device=p.device if p is not None else "cpu")
