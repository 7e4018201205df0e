"""The one place that loads models: built-in names, local folders, GGUF files, hub ids, run folders.

GGUF files are dequantized once (`GgufConfig(dequantize=True)`: transformers' `Trainer` and
`save_pretrained` refuse a quantized model) and cached as a plain Hugging Face folder, so every
later load takes a fraction of a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from forgetless.errors import ForgetlessError
from forgetless.home import models_cache
from forgetless.models.builtin import BUILTINS
from forgetless.models.device import pick_device, pick_dtype
from forgetless.registry import did_you_mean

RUN_FILE = "forgetless-run.json"  # written by `forgetless train` into its run folder
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
COMPLETE_MARK = ".forgetless-complete"


@dataclass
class LoadedModel:
    """A model in memory plus everything a result must record about where it came from."""

    model: Any  # transformers.PreTrainedModel or peft.PeftModel
    tokenizer: Any
    spec: str  # what the user asked for
    source: str  # builtin | gguf | folder | hub | run
    path: str  # the local folder the weights were read from
    adapter: str | None = None
    converted: bool = False  # True when this call ran a GGUF conversion
    info: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] | None = None  # a run folder's resolved training config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def describe(self) -> dict[str, Any]:
        """What a result records about the model, including content fingerprints of weights and adapter."""
        return {"spec": self.spec, "source": self.source, "path": self.path, "adapter": self.adapter,
                "fingerprint": folder_fingerprint(Path(self.path)) if self.path else None,
                "adapter_fingerprint": folder_fingerprint(Path(self.adapter)) if self.adapter else None,
                "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."), **self.info}


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """Content hash, remembered per (path, size, mtime): every load of a built-in hashes its GGUF."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        with path.open("rb") as f:
            _DIGESTS[key] = hashlib.file_digest(f, "sha256").hexdigest()
    return _DIGESTS[key]


def folder_fingerprint(folder: Path) -> str | None:
    """sha256 (first 16 hex) of a model or adapter folder's config and weights."""
    files = sorted(p for p in folder.glob("*") if p.suffix in (".json", ".safetensors") and p.is_file()) \
        if folder.is_dir() else []
    if not files:
        return None
    return hashlib.sha256("".join(f"{p.name}:{file_sha256(p)}\n" for p in files).encode()).hexdigest()[:16]


def converted_folder(gguf: Path, name: str | None = None) -> Path:
    """Cache folder for a GGUF file, keyed by its content so an edited file converts anew."""
    stem = name or gguf.stem
    return models_cache() / f"{stem}-{file_sha256(gguf)[:12]}"


def convert_gguf(gguf: Path, name: str | None = None) -> tuple[Path, bool]:
    """Dequantize a GGUF file into a cached Hugging Face folder; returns (folder, converted_now)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    target = converted_folder(gguf, name)
    if (target / COMPLETE_MARK).exists():
        return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True))
        except (ValueError, OSError, KeyError, RuntimeError, IndexError, TypeError) as e:
            raise ForgetlessError(f"not a readable GGUF model ({type(e).__name__}: {str(e).splitlines()[0][:160]})",
                                  where=gguf) from None
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / COMPLETE_MARK).write_text(json.dumps({"gguf": str(gguf), "sha256": file_sha256(gguf)}))
        if target.exists():  # a half-written folder from a killed conversion
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target, True


def _check_hub_reachable(spec: str) -> None:
    """Fail in seconds, not after minutes of retries, when the hub cannot be reached."""
    why = None
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        why = "HF_HUB_OFFLINE is set"
    else:
        try:
            socket.create_connection(("huggingface.co", 443), timeout=5).close()
        except OSError:
            why = "the Hugging Face Hub cannot be reached (no network?)"
    if why:
        raise ForgetlessError(f"'{spec}' is not a local path, a .gguf file or a built-in model, and {why}",
                              hint="pass a local folder or a built-in name: " + ", ".join(BUILTINS.names()))


def resolve(spec: str) -> tuple[str, str, bool]:
    """Turn a model spec into (local folder or hub id, source, converted_now)."""
    if spec in BUILTINS:
        folder, converted = convert_gguf(BUILTINS.get(spec).gguf_path(), spec)
        return str(folder), "builtin", converted
    path = Path(spec).expanduser()
    if path.exists():
        if path.is_file():
            if path.suffix != ".gguf":
                raise ForgetlessError("not a model: expected a folder or a .gguf file", where=path)
            folder, converted = convert_gguf(path.resolve())
            return str(folder), "gguf", converted
        if (path / RUN_FILE).exists():
            return str(path), "run", False
        if not (path / "config.json").exists():
            raise ForgetlessError("folder is not a Hugging Face model (no config.json)", where=path)
        return str(path), "folder", False
    if path.suffix == ".gguf" or spec.startswith((".", "/", "~")) or spec.count("/") > 1 or os.sep in spec and not HUB_ID.match(spec):
        raise ForgetlessError("model path not found", where=spec)
    if not HUB_ID.match(spec):
        raise ForgetlessError(f"unknown model '{spec}'", hint=did_you_mean(spec, BUILTINS.names()) + ", or a path")
    _check_hub_reachable(spec)
    return spec, "hub", False


def _load_hf(location: str, *, device: torch.device, dtype: torch.dtype, trust_remote_code: bool,
             allow_pickle: bool) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(location).exists()
    if local and not allow_pickle and not list(Path(location).glob("*.safetensors")):
        if list(Path(location).glob("*.bin")) or list(Path(location).glob("*.pt")):
            raise ForgetlessError("weights are pickle files (.bin/.pt), refused by default", where=location,
                                  hint="convert them to safetensors, or pass --allow-pickle if you trust their source")
        raise ForgetlessError("no weights found (*.safetensors)", where=location)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            location, dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=None if allow_pickle else True)
    except ForgetlessError:
        raise
    except Exception as e:  # transformers raises many types for a broken folder
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ForgetlessError(f"could not load model: {first}", where=location) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    model.eval()
    return model, tokenizer


def load_adapter(model: Any, adapter: str | Path) -> Any:
    """Attach a PEFT adapter; a base/adapter mismatch becomes one clear line."""
    from peft import PeftModel

    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").exists():
        raise ForgetlessError("not a PEFT adapter folder (no adapter_config.json)", where=adapter)
    try:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    except Exception as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ForgetlessError(f"adapter does not fit this base model: {first}", where=adapter) from None


def load_model(spec: str, *, adapter: str | Path | None = None, device: str | None = None,
               dtype: str | None = None, trust_remote_code: bool = False,
               allow_pickle: bool = False) -> LoadedModel:
    """Load a causal LM and its tokenizer from a built-in name, folder, .gguf file, hub id or run folder.

    A forgetless run folder loads its base model plus the trained adapter (or the full model)
    that the run recorded, so nobody retypes what the run already knows.
    """
    location, source, converted = resolve(spec)
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    info: dict[str, Any] = {}
    if source == "run":
        run = json.loads((Path(location) / RUN_FILE).read_text())
        info["run"] = location
        training = _run_training(Path(location), run)
        if run.get("adapter"):
            base = load_model(run["base_model"], device=device, dtype=dtype, trust_remote_code=trust_remote_code,
                              allow_pickle=allow_pickle)
            adapter = adapter or Path(location) / run["adapter"]
            base.model = load_adapter(base.model, adapter)
            base.spec, base.source, base.adapter = spec, "run", str(adapter)
            base.info.update(info, base_model=run["base_model"])
            base.training = training
            return base
        location = str(Path(location) / run["model"])
        info["base_model"] = run["base_model"]
    model, tokenizer = _load_hf(location, device=dev, dtype=torch_dtype, trust_remote_code=trust_remote_code,
                                allow_pickle=allow_pickle)
    if adapter is not None:
        model = load_adapter(model, adapter)
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, source=source, path=location,
                       adapter=str(adapter) if adapter else None, converted=converted, info=info,
                       training=training if source == "run" else None)


def _run_training(run_dir: Path, run: dict[str, Any]) -> dict[str, Any]:
    """What `compare` needs to know about a run: its resolved config plus the data counts."""
    import yaml

    config_file = run_dir / run.get("config", "config.yaml")
    config = yaml.safe_load(config_file.read_text()) if config_file.exists() else {}
    return {**(config or {}), "n_examples": (run.get("data") or {}).get("domain_examples"), "steps": run.get("steps")}
