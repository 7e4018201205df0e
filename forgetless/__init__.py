"""forgetless: fine-tune causal language models without catastrophic forgetting, and prove it.

    import forgetless
    base = forgetless.load_model("smollm2-135m")
    before = forgetless.evaluate(base)                      # knowledge, behaviour, drift, per item
    run = forgetless.train(forgetless.load_config("examples/lora-replay-ewc.yaml", ["out=runs/ewc"]))
    after = forgetless.evaluate(forgetless.load_model(str(run.run_dir)), reference="base")
    report = forgetless.compare(before, after)              # paired statistics, verdict, diagnosis

Names are imported on first use, so `import forgetless` (and the CLI's start) stays fast.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

_API = {
    "load_model": "forgetless.models",
    "LoadedModel": "forgetless.models",
    "evaluate": "forgetless.eval",
    "EvalSettings": "forgetless.eval",
    "EvalResult": "forgetless.eval",
    "compare": "forgetless.compare",
    "ForgettingReport": "forgetless.compare",
    "load_suite": "forgetless.suites",
    "train": "forgetless.train",
    "TrainConfig": "forgetless.train",
    "load_config": "forgetless.train",
    "merge": "forgetless.merge",
    "sweep": "forgetless.merge",
    "run": "forgetless.workflow.run",
    "RunOptions": "forgetless.workflow.run",
    "write_report": "forgetless.report",
    "ForgetlessError": "forgetless.errors",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'forgetless' has no attribute '{name}'")
    return getattr(importlib.import_module(_API[name]), name)


def __dir__() -> list[str]:
    return __all__


class _Api(types.ModuleType):
    """`forgetless.compare` is the function even after the `forgetless.compare` package is imported.

    Python binds an imported subpackage as an attribute of its parent; for the names where a
    subpackage and an API function share a name, the function wins (the package stays importable).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Api
