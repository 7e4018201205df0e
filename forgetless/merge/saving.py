"""Loading a base/tuned pair once, and writing an interpolated model that plain transformers/PEFT load.

The output folder is also a forgetless run folder, so `forgetless eval OUT` works:

    full fine-tuning   OUT/config.json, OUT/*.safetensors, tokenizer files   (theta(alpha) itself)
    LoRA               OUT/adapter_config.json, OUT/adapter_model.safetensors (the same weights;
                       lora_alpha scaled by alpha, per module in alpha_pattern)
    both               OUT/forgetless-merge.json (base, tuned, alpha) and OUT/forgetless-run.json
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetless.errors import ForgetlessError
from forgetless.history import records
from forgetless.io import atomic_write_json
from forgetless.merge.interpolate import Alpha, Interpolator, LoraScaler, count_blocks, is_lora, per_layer
from forgetless.models.loading import RUN_FILE, LoadedModel, load_model
from forgetless.versions import library_versions

MERGE_FILE = "forgetless-merge.json"
FORMAT_VERSION = 1


@dataclass
class Pair:
    """The tuned model in memory, the interpolator that moves it, and the base it moves towards."""

    loaded: LoadedModel
    interpolator: Interpolator
    base: str | None  # spec of the base model, as recorded in the output's run file
    tuned: str

    @property
    def kind(self) -> str:
        return self.interpolator.kind


def _spec_for_record(spec: str) -> str:
    """A local path becomes absolute, so the run file still resolves from another folder."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def _is_bare_adapter(spec: str) -> bool:
    path = Path(spec).expanduser()
    return (path.is_dir() and (path / "adapter_config.json").exists() and not (path / "config.json").exists()
            and not (path / RUN_FILE).exists())


def _load_tuned(tuned: str, base: str | None, device: str | None, dtype: str | None) -> LoadedModel:
    """A run folder, HF folder or bare adapter folder; with an explicit base, an adapter goes on that base."""
    run_file = Path(tuned).expanduser() / RUN_FILE
    adapter: Path | None = None
    if _is_bare_adapter(tuned):
        adapter = Path(tuned)
    elif run_file.is_file():
        adapter_name = json.loads(run_file.read_text()).get("adapter")
        adapter = run_file.parent / adapter_name if adapter_name else None
    if adapter is not None and base is not None:
        loaded = load_model(base, adapter=adapter, device=device, dtype=dtype)
        loaded.spec = tuned
        loaded.info["base_model"] = base
        return loaded
    if adapter is not None and _is_bare_adapter(tuned):
        raise ForgetlessError("a bare adapter folder needs its base model", where=tuned, hint="pass --base MODEL")
    return load_model(tuned, device=device, dtype=dtype)


def load_pair(base: str | LoadedModel | None, tuned: str | LoadedModel, *, device: str | None = None,
              dtype: str | None = None) -> Pair:
    """Load the tuned model once and build its interpolator.

    LoRA: the base is the adapter's own base (the run's, or `base` when given). Full fine-tuning:
    `base` (default: the run's recorded base model) is loaded, its differing parameters kept, and
    the rest of it freed.
    """
    base_spec = base.spec if isinstance(base, LoadedModel) else base
    loaded = tuned if isinstance(tuned, LoadedModel) else _load_tuned(tuned, base_spec, device, dtype)
    base_spec = base_spec or loaded.info.get("base_model")
    if is_lora(loaded.model):
        interpolator: Interpolator = LoraScaler(loaded.model)
    else:
        if base_spec is None:
            raise ForgetlessError(f"'{loaded.spec}' records no base model to interpolate towards",
                                  hint="pass --base MODEL (the model it was fine-tuned from)")
        base_loaded = base if isinstance(base, LoadedModel) else load_model(base_spec, device=device, dtype=dtype)
        interpolator = Interpolator.for_model(loaded.model, base_loaded.model)
        del base_loaded  # only the trained parameters' base values stay referenced
    return Pair(loaded=loaded, interpolator=interpolator, base=_spec_for_record(base_spec) if base_spec else None,
                tuned=_spec_for_record(loaded.spec))


def schedule(pair: Pair, alpha: float, lower_alpha: float | None = None, split: int | None = None) -> Alpha:
    """One alpha, or alpha for the upper blocks and lower_alpha for the lower ones."""
    if lower_alpha is None:
        return alpha
    return per_layer(lower_alpha, alpha, count_blocks(pair.loaded.model), split)


def check_alpha(alpha: float, what: str = "alpha") -> float:
    if not 0.0 <= alpha <= 1.0:
        raise ForgetlessError(f"{what} must be between 0 (base model) and 1 (fine-tuned model), got {alpha}")
    return float(alpha)


def prepare_out(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Refuse, before any compute, an output folder that holds something we did not write."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ForgetlessError("output exists and is not a folder", where=out)
    existing = next(p for p in [out, *out.absolute().parents] if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise ForgetlessError(f"'{existing}' is not a writable folder", where=out)
    if out.is_dir() and any(out.iterdir()):
        ours = (out / MERGE_FILE).exists() or (out / "sweep.json").exists()
        if not (overwrite and ours):
            raise ForgetlessError("output folder is not empty", where=out,
                                  hint="choose a new folder" + (", or pass --overwrite" if ours else ""))
    return out


def _write_weights(pair: Pair, alpha: Alpha, folder: Path) -> dict[str, Any]:
    """Weights of theta(alpha) into `folder`; returns the run-file entries that point at them."""
    model = pair.loaded.model
    if isinstance(pair.interpolator, LoraScaler):
        adapter = pair.interpolator.adapter
        model.save_pretrained(folder, selected_adapters=[adapter])
        where = folder if adapter == "default" else folder / adapter  # PEFT's layout for named adapters
        config_path = where / "adapter_config.json"
        config = json.loads(config_path.read_text())
        if not callable(alpha):
            config["lora_alpha"] = alpha * config["lora_alpha"]
        # every module named exactly (re.escape): PEFT matches keys as regexes against module names
        config["alpha_pattern"] = {re.escape(name): value for name, value in pair.interpolator.lora_alphas(alpha).items()}
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        return {"adapter": "." if adapter == "default" else adapter}
    pair.interpolator.set_alpha(alpha)
    try:
        model.save_pretrained(folder)
    finally:
        pair.interpolator.set_alpha(1.0)
    pair.loaded.tokenizer.save_pretrained(folder)
    return {"model": "."}


def require_base(pair: Pair) -> None:
    """A saved model's run file must name its base, or `forgetless eval OUT` could not load it."""
    if pair.base is None:
        raise ForgetlessError(f"the base model of '{pair.tuned}' is not known, so the output could not be loaded again",
                              hint="pass --base MODEL")


def _split_record(pair: Pair, lower_alpha: float | None, split: int | None) -> int | None:
    if lower_alpha is None:
        return None
    return count_blocks(pair.loaded.model) // 2 if split is None else split


def save_merged(pair: Pair, alpha: float, out_dir: str | Path, *, lower_alpha: float | None = None,
                split: int | None = None, overwrite: bool = False, extra: dict[str, Any] | None = None) -> Path:
    """Write theta(alpha) (or the scaled adapter) plus forgetless-merge.json / forgetless-run.json.

    The model in memory is left at alpha = 1 (the tuned model). Written to a temporary sibling
    folder first, so a crash never leaves a half-written model at `out_dir`.
    """
    out = prepare_out(out_dir, overwrite)
    require_base(pair)
    mix = schedule(pair, check_alpha(alpha), None if lower_alpha is None else check_alpha(lower_alpha, "lower alpha"),
                   split)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        entries = _write_weights(pair, mix, tmp)
        record = {"format_version": FORMAT_VERSION, "method": "lora-scaling" if pair.kind == "lora" else "wise-ft",
                  "kind": pair.kind, "base": pair.base, "tuned": pair.tuned, "alpha": alpha,
                  "lower_alpha": lower_alpha, "split": _split_record(pair, lower_alpha, split),
                  "trained": len(pair.interpolator.names),
                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": library_versions(), **(extra or {})}
        atomic_write_json(tmp / MERGE_FILE, record)
        atomic_write_json(tmp / RUN_FILE, {"base_model": pair.base, **entries, "merge": MERGE_FILE})
        if out.exists():  # prepare_out allowed it: empty, or our own earlier output with overwrite
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _history(folder: Path, base: str | None, tuned: str, alpha: float, out_dir: str | Path, *,
             lower_alpha: float | None = None, split: int | None = None, dtype: str | None = None,
             **_: Any) -> dict[str, Any]:
    return {"model": tuned, "paths": {"out": folder},
            "config": {"base": base, "alpha": alpha, "lower_alpha": lower_alpha, "split": split, "dtype": dtype}}


@records("merge", _history)
def merge(base: str | None, tuned: str, alpha: float, out_dir: str | Path, *, lower_alpha: float | None = None,
          split: int | None = None, device: str | None = "cpu", dtype: str | None = None,
          overwrite: bool = False) -> Path:
    """Write theta(alpha) = (1 - alpha) theta_0 + alpha theta_ft (or the alpha-scaled LoRA adapter) to `out_dir`.

    `lower_alpha` mixes the lower half of the blocks (or blocks below `split`) with its own weight.
    Runs on the CPU in float32 by default, so the weights are not rounded through bfloat16.
    """
    check_alpha(alpha)
    prepare_out(out_dir, overwrite)  # fail before loading anything
    pair = load_pair(base, tuned, device=device, dtype=dtype)
    return save_merged(pair, alpha, out_dir, lower_alpha=lower_alpha, split=split, overwrite=overwrite)
