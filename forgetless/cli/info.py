"""`forgetless info` (alias `models`): versions, device, cache, and the built-in models' state."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import typer
from rich.table import Table

from forgetless.cli.console import console, print_json
from forgetless.cli.main import app
from forgetless.home import folder_size, forgetless_home, models_cache
from forgetless.models.builtin import BUILTINS
from forgetless.models.device import pick_device, pick_dtype

PACKAGES = ["forgetless", "torch", "transformers", "peft", "accelerate", "safetensors", "gguf", "pydantic"]


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _cached_folder(name: str) -> Any:
    folders = sorted(models_cache().glob(f"{name}-*/.forgetless-complete")) if models_cache().exists() else []
    return folders[-1].parent if folders else None


def collect_info() -> dict[str, Any]:
    device = pick_device(None)
    models = []
    for name in BUILTINS.names():
        builtin = BUILTINS.get(name)
        installed = builtin.installed()
        gguf = builtin.locate_gguf() if installed and name == "smollm2-135m" else None
        cached = _cached_folder(name)
        models.append({
            "name": name, "description": builtin.description, "license": builtin.license,
            "installed": installed, "gguf_bytes": gguf.stat().st_size if gguf else None,
            "converted": cached is not None, "cache": str(cached) if cached else None,
            "cache_bytes": folder_size(cached) if cached else 0,
            "ready": installed, "install": None if installed else builtin.install,
        })
    return {
        "versions": {"python": platform.python_version(), **{p: _version(p) for p in PACKAGES}},
        "device": str(device), "dtype": str(pick_dtype(None, device)).removeprefix("torch."),
        "home": str(forgetless_home()), "models": models,
    }


def _mb(n: int | None) -> str:
    return f"{n / 1e6:,.0f} MB" if n else "-"


@app.command("info")
def info_command(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Versions, device, cache location and each built-in model's state.

    Example: forgetless info --json
    """
    data = collect_info()
    if as_json:
        print_json(data)
        return
    versions = "  ".join(f"{k} {v or '[red]missing[/]'}" for k, v in data["versions"].items())
    console.print(f"[bold]forgetless[/]  {versions}")
    console.print(f"device: [bold]{data['device']}[/] ({data['dtype']})   home: {data['home']}")
    table = Table(title="Built-in models")
    for column in ["name", "installed", "converted", "GGUF", "cache", "licence"]:
        table.add_column(column)
    for m in data["models"]:
        table.add_row(m["name"], "[green]yes[/]" if m["installed"] else f"[yellow]no[/]: {m['install']}",
                      "[green]yes[/]" if m["converted"] else "no (first load converts it)",
                      _mb(m["gguf_bytes"]), _mb(m["cache_bytes"]), m["license"])
    console.print(table)


app.command("models", help="Alias of `info`.")(info_command)
