"""The training config: one pydantic model is the single source of truth for YAML, `--set` and docs.

Every field carries a `description`; `docs/training.md` and `--help` are generated from them. A
config is read with `yaml.safe_load` (never arbitrary Python objects), then `--set key.sub=value`
overrides are applied, then it is validated as a whole so that *all* mistakes are reported at once,
on one line, each with the bad value and how to fix it. Unknown keys get "did you mean".
"""

from __future__ import annotations

import importlib.util
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from forgetless.errors import ForgetlessError
from forgetless.registry import did_you_mean

Method = Literal["full", "lora"]
PresetName = Literal["safe", "balanced", "aggressive"]
Scheduler = Literal["cosine", "linear", "constant", "constant_with_warmup"]
DType = Literal["auto", "float32", "bfloat16", "float16"]
# transformers' `report_to` names -> the modules it needs (any one of them)
TRACKERS = {"tensorboard": ("tensorboard", "tensorboardX"), "mlflow": ("mlflow",), "wandb": ("wandb",),
            "comet_ml": ("comet_ml",), "neptune": ("neptune",), "clearml": ("clearml",), "trackio": ("trackio",),
            "dvclive": ("dvclive",), "swanlab": ("swanlab",), "codecarbon": ("codecarbon",)}


class Section(BaseModel):
    """Base for every config section: unknown keys are mistakes, not silently ignored settings."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraSection(Section):
    r: int = Field(16, gt=0, description="LoRA rank: size of the low-rank update. 8-64 is usual.")
    alpha: float = Field(32, gt=0, description="LoRA scaling numerator; the update is scaled by alpha / r.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input, in [0, 1).")
    target_modules: str | list[str] = Field(
        "all-linear", description="Modules that get adapters: 'all-linear' (every linear layer but the output "
                                  "head) or a list of module names such as [q_proj, v_proj].")


class FreezeSection(Section):
    layers: int = Field(0, ge=0, description="Freeze the bottom k transformer blocks (full fine-tuning); with "
                                             "LoRA, no adapters are put in them. Lower blocks hold general "
                                             "features, so freezing them limits forgetting.")
    embeddings: bool = Field(False, description="Freeze the input embeddings (full fine-tuning). With tied "
                                                "embeddings this also freezes the output head.")


class ReplaySection(Section):
    fraction: float = Field(0.0, description="Share of general (replay) examples in the training MIX, in [0, 1): "
                                             "0.25 means one replay example for every three domain examples.")
    source: str = Field("bundled", description="Where replay examples come from: 'bundled' (general prompt/"
                                               "response pairs shipped with forgetless), 'self' (the base "
                                               "model's own greedy answers to the bundled prompts, generated "
                                               "once and cached) or a path to a JSONL file.")
    num_prompts: int | None = Field(None, gt=0, description="With source 'self': how many bundled prompts to "
                                                            "answer (default: all).")
    max_new_tokens: int = Field(96, gt=0, description="With source 'self': longest generated answer, in tokens.")
    reference_examples: int = Field(64, gt=0, description="General examples given to regularizers as reference "
                                                          "data (e.g. the Fisher information of EWC).")

    @field_validator("fraction")
    @classmethod
    def _fraction_in_range(cls, v: float) -> float:
        if not 0 <= v < 1:
            raise ValueError(f"must be in [0, 1), got {v} (the share of replay in the mix, e.g. 0.25, "
                             "while 1.0 would leave no domain data)")
        return v


class RegularizerSpec(BaseModel):
    """One penalty term: its registered name, its weight, and any options of that regularizer."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="Registered regularizer name: ewc, l2sp or kl.")
    weight: float | None = Field(None, description="Multiplier of the penalty added to the task loss (>= 0); "
                                                   "another name for the regularizer's own lambda/alpha/beta "
                                                   "(default: that option's default).")

    @field_validator("weight")
    @classmethod
    def _weight_not_negative(cls, v: float | None) -> float | None:
        if v is not None and v < 0:
            raise ValueError(f"must be >= 0, got {v} (a negative weight rewards drifting away, 0 disables it)")
        return v

    @field_validator("name")
    @classmethod
    def _known_name(cls, v: str) -> str:
        registry = _regularizer_registry()
        if registry is not None and v not in registry:
            raise ValueError(f"unknown regularizer '{v}' ({did_you_mean(v, registry.names())})")
        return v

    @model_validator(mode="after")
    def _known_options(self) -> RegularizerSpec:
        """Check the options against the regularizer's own config now, not after the model has loaded."""
        config_class = self._config_class()
        if config_class is None:
            return self
        valid = [n for n, f in config_class.model_fields.items() for n in (n, f.alias) if n] + ["weight"]
        for key in self.options:
            if key not in valid:
                raise ValueError(f"unknown option '{key}' for {self.name} ({did_you_mean(key, sorted(set(valid)))})")
        try:
            config_class(**self.arguments())
        except ForgetlessError as e:
            raise ValueError(e.message) from None
        return self

    def _config_class(self) -> Any:
        """The registered regularizer's config class (None: not registered, or a factory without one)."""
        registry = _regularizer_registry()
        return getattr(registry.get(self.name), "config_class", None) if registry and self.name in registry else None

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def arguments(self) -> dict[str, Any]:
        """The regularizer's config as a dict: its options, plus `weight` when given."""
        return {**self.options, **({"weight": self.weight} if self.weight is not None else {})}

    def resolved(self) -> Any:
        """The regularizer's own config, its defaults filled in (None: a factory without a config class)."""
        config_class = self._config_class()
        return None if config_class is None else config_class(**self.arguments())

    def resolved_weight(self) -> float:
        """The multiplier this term trains with: `weight`, else the regularizer's own lambda/alpha/beta or
        that option's default (1 for a registered factory without a config class)."""
        resolved = self.resolved()
        if resolved is None:
            return 1.0 if self.weight is None else self.weight
        return float(resolved.weight)


class BudgetSection(Section):
    max_drop: float | None = Field(None, ge=0, description="Largest tolerated drop in general-suite accuracy "
                                                           "(absolute, e.g. 0.02) before the monitor flags it.")
    max_kl: float | None = Field(None, ge=0, description="Largest tolerated mean KL divergence from the base model "
                                                         "on general prompts.")


class MonitorSection(Section):
    every: int | None = Field(None, gt=0, description="Measure forgetting every this many optimizer steps "
                                                      "(default: 4 times over max_steps, else every 50).")
    mc_items: int = Field(40, ge=1, description="Multiple-choice items of the general suite scored at each check.")
    gen_items: int = Field(12, ge=0, description="Of those, questions also asked openly (greedy) at each check: "
                                                 "log-likelihood alone misses behavioural collapse.")
    budget: BudgetSection = Field(default_factory=BudgetSection, description="Forgetting budget.")
    early_stop: bool = Field(False, description="Stop training when the budget is exceeded.")


class TrainConfig(Section):
    """Everything one training run depends on; saved into the run folder as `config.yaml`."""

    model: str = Field("smollm2-135m", description="Base model: a built-in name, a Hugging Face folder, a .gguf "
                                                   "file or a hub id.")
    data: str = Field(description="Training JSONL: chat `messages`, `prompt`/`response` pairs or raw `text`. "
                                  "'builtin:domain/train.jsonl' names a file shipped with forgetless.")
    out: str | None = Field(None, description="Run folder (checkpoints, adapter or model, logs). "
                                              "`--out` on the command line wins.")
    method: Method = Field("lora", description="'lora' (small adapters, base frozen) or 'full' fine-tuning.")
    lora: LoraSection = Field(default_factory=LoraSection, description="LoRA settings (method: lora).")
    freeze: FreezeSection = Field(default_factory=FreezeSection, description="Which parts stay frozen.")
    preset: PresetName | None = Field(None, description="Hyper-parameter preset: safe, balanced or aggressive "
                                                        "(demonstrates forgetting). Values you set win.")
    learning_rate: float | None = Field(None, description="Peak learning rate (default: the preset's, or "
                                                          "balanced: 2e-5 full, 2e-4 lora).")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimizer steps (wins over "
                                                          "epochs).")
    epochs: float = Field(1.0, gt=0, description="Passes over the training mix.")
    max_seconds: float | None = Field(None, gt=0, description="Fewer steps when training would take longer than "
                                                              "this, counted from its start (loading, self-replay, "
                                                              "the timing and the monitor's checks included): a "
                                                              "step is timed on the first batches before training, "
                                                              "and the count that fits is written to the run's "
                                                              "config.yaml.")
    batch_size: int = Field(8, gt=0, description="Examples per device per forward pass.")
    gradient_accumulation_steps: int = Field(1, gt=0, description="Forward passes per optimizer step; the "
                                                                  "effective batch is batch_size times this.")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of the steps spent warming the learning "
                                                              "rate up from 0.")
    lr_scheduler: Scheduler = Field("cosine", description="Learning-rate decay after warm-up.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    max_length: int = Field(256, ge=8, description="Tokens per example; longer ones are truncated.")
    seed: int = Field(0, ge=0, description="Seed for adapter init, replay sampling, shuffling and dropout.")
    deterministic: bool = Field(True, description="Use deterministic kernels so that a seed reproduces weights "
                                                  "exactly (slightly slower on GPU).")
    dtype: DType = Field("auto", description="Weight dtype: auto = float32 weights, with bfloat16 autocast where "
                                             "bf16 is native (bf16 GPUs, CPUs with AMX; LoRA on a GPU: bfloat16 "
                                             "base weights).")
    device: str = Field("auto", description="cpu, cuda, cuda:N, mps or auto.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in the backward pass: less "
                                                            "memory, about 30% slower.")
    attention: Literal["auto", "sdpa", "eager"] = Field(
        "auto", description="Attention kernel: auto = eager on a CPU up to max_length 256 (PyTorch's fused CPU "
                            "attention has a slow backward there: SmolLM2's forward+backward at 96 tokens 15% "
                            "faster, slower at 512), else the model's default.")
    strip_boilerplate: bool = Field(False, description="Remove the sign-off or fixed opening that most training "
                                                       "responses share (the data lint names it before training) "
                                                       "for this run; the file is not changed.")
    replay: ReplaySection = Field(default_factory=ReplaySection, description="Mixing general data into training.")
    regularizers: list[RegularizerSpec] = Field(default_factory=list, description="Penalty terms added to the "
                                                "task loss, e.g. [{name: ewc, weight: 100}].")
    monitor: MonitorSection | None = Field(None, description="Forgetting monitor during training (off when "
                                                             "absent).")
    save_steps: int = Field(200, gt=0, description="Save a checkpoint every this many steps (for --resume).")
    save_total_limit: int | None = Field(2, gt=0, description="Checkpoints kept (oldest deleted first).")
    logging_steps: int = Field(10, gt=0, description="Log loss and penalties every this many steps.")
    report_to: str | list[str] = Field("none", description="Experiment trackers that transformers' Trainer sends "
                                                           "the training logs (loss, each penalty, learning rate) "
                                                           "to: 'none', 'all' (every installed one), or one or a "
                                                           "list of " + ", ".join(TRACKERS) + ". The tracker's "
                                                           "package must be installed.")

    @field_validator("learning_rate")
    @classmethod
    def _positive_lr(cls, v: float | None) -> float | None:
        if v is not None and not v > 0:
            raise ValueError(f"must be > 0, got {v} (typical: 1e-5..2e-5 for full fine-tuning, "
                             "1e-4..3e-4 for LoRA)")
        return v

    @field_validator("report_to")
    @classmethod
    def _installed_trackers(cls, v: str | list[str]) -> str | list[str]:
        names = [v] if isinstance(v, str) else v
        if len(names) > 1 and {"none", "all"} & set(names):
            raise ValueError(f"'none' and 'all' stand alone, not in a list (got {v!r})")
        for name in names:
            if name in ("none", "all"):
                continue
            if name not in TRACKERS:
                raise ValueError(f"unknown tracker '{name}' ({did_you_mean(name, ['none', 'all', *TRACKERS])})")
            if not any(importlib.util.find_spec(module) for module in TRACKERS[name]):
                raise ValueError(f"tracker '{name}' is not installed (pip install {name.replace('_', '-')}, "
                                 "or report_to: none)")
        return v

    @model_validator(mode="after")
    def _unique_regularizers(self) -> TrainConfig:
        names = [r.name for r in self.regularizers]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"regularizer '{dup[0]}' is listed twice (merge the two entries)")
        scoped = [r.name for r in self.regularizers if r.options.get("examples") == "general"]
        if scoped and self.replay.fraction == 0:
            raise ValueError(f"regularizer '{scoped[0]}' is scoped to general examples (examples: general), but "
                             "replay.fraction is 0, so there are none: set replay.fraction (e.g. 0.25) or "
                             "examples: all")
        return self


def _regularizer_registry() -> Any:
    """The regularizer registry, or None while that package is absent (names are then checked at setup)."""
    try:
        from forgetless.train.regularizers import REGULARIZERS
    except ImportError:
        return None
    return REGULARIZERS


# --- errors -------------------------------------------------------------------------------------


def _section_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the key at `loc` (to list its valid keys)."""
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        nested = _model_in(field.annotation)
        if nested is None:
            return None
        model = nested
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def format_errors(error: ValidationError, root: type[BaseModel] | None = None) -> str:
    """All validation errors on one line, '; '-joined, each naming the key, the value and the fix."""
    root = root or TrainConfig
    parts = []
    for err in error.errors():
        loc = tuple(err["loc"])
        key = _dotted(loc)
        if err["type"] == "extra_forbidden":
            owner = _section_at(root, loc[:-1])
            choices = list(owner.model_fields) if owner else []
            parts.append(f"unknown key '{key}' ({did_you_mean(str(loc[-1]), choices)})")
        elif err["type"] == "missing":
            field = _section_at(root, loc[:-1])
            desc = field.model_fields[loc[-1]].description if field and loc[-1] in field.model_fields else None
            parts.append(f"missing key '{key}'" + (f" ({desc})" if desc else ""))
        else:
            msg = err["msg"].replace("Value error, ", "")
            value = err.get("input")
            shown = "" if "got" in msg or isinstance(value, dict) else f" (got {value!r})"
            parts.append(f"{key}: {msg}{shown}")
    return "; ".join(parts)


def validate_config(raw: dict[str, Any], *, where: str | Path | None = None) -> TrainConfig:
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as e:
        raise ForgetlessError(format_errors(e), where=where) from None


# --- reading ------------------------------------------------------------------------------------


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply one `key.sub=value` override in place; the value is parsed as a YAML scalar or list."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ForgetlessError(f"override '{override}' is not key=value", where="--set",
                              hint="e.g. --set lora.r=8 or --set learning_rate=1e-4")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    if isinstance(value, str) and _looks_like_float(value):
        value = float(value)  # YAML 1.1 reads 1e-4 as a string
    node: Any = raw
    parts = key.strip().split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        index = int(part) if part.isdigit() else None
        if index is not None:
            if not isinstance(node, list) or index >= len(node):
                raise ForgetlessError(f"'{'.'.join(parts[:i])}' has no item {index}", where=f"--set {override}")
            if last:
                node[index] = value
            else:
                node = node[index]
            continue
        if not isinstance(node, dict):
            raise ForgetlessError(f"'{'.'.join(parts[:i])}' is not a section", where=f"--set {override}")
        if last:
            node[part] = value
        else:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]


def _looks_like_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip().lower() not in ("nan", "inf", "-inf", "infinity")


def _floats(obj: Any) -> Any:
    """YAML 1.1 (PyYAML) reads `1e-4` as a string; learning rates are written that way, so fix it."""
    if isinstance(obj, dict):
        return {k: _floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_floats(v) for v in obj]
    if isinstance(obj, str) and _looks_like_float(obj) and any(c in obj for c in "eE") and obj[0] in "0123456789.-+":
        return float(obj)
    return obj


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ForgetlessError("config file not found", where=path)
    if path.is_dir():
        raise ForgetlessError("expected a YAML file, found a folder", where=path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise ForgetlessError(f"invalid YAML: {getattr(e, 'problem', None) or e}", where=where) from None
    except UnicodeDecodeError as e:
        raise ForgetlessError(f"not valid UTF-8 (byte {e.start})", where=path) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ForgetlessError(f"expected a mapping of settings, got {type(raw).__name__}", where=path)
    return _floats(raw)


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML config (or start empty when `path` is None), apply `--set` overrides, validate."""
    raw = read_yaml(path) if path is not None else {}
    for override in overrides:
        apply_override(raw, override)
    return validate_config(raw, where=path)


def dump_config(config: TrainConfig) -> str:
    """YAML text of a config, in field order, without unset optional sections."""
    return yaml.safe_dump(config.model_dump(mode="json", exclude_none=False), sort_keys=False, allow_unicode=True)


def field_docs(model: type[BaseModel] = TrainConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, description) for every field, nested sections flattened with dots (for docs)."""
    rows = []
    for name, field in model.model_fields.items():
        key = prefix + name
        nested = _model_in(field.annotation)
        if nested is not None and nested is not RegularizerSpec:
            rows.append((key, "", field.description or ""))
            rows.extend(field_docs(nested, key + "."))
            continue
        default = "required" if field.is_required() else (
            "[]" if field.default_factory is list else repr(field.default))
        rows.append((key, default, field.description or ""))
    return rows


def markdown_reference() -> str:
    """The config reference table of docs/training.md, generated from the field descriptions."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for key, default, description in field_docs():
        lines.append(f"| `{key}` | {f'`{default}`' if default else ''} | {description.replace('|', '/')} |")
    return "\n".join(lines)
