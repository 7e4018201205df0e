"""Switching a model's adapters off: the base model's view of a PEFT model, used wherever the base is
compared with the model being trained or evaluated (KL, Fisher, the monitor, text drift)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


def has_adapters(model: nn.Module) -> bool:
    """True for a PEFT model or one with PEFT tuner layers injected."""
    try:
        from peft import PeftModel
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:
        return False
    return isinstance(model, PeftModel) or any(isinstance(m, BaseTunerLayer) for m in model.modules())


@contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[None]:
    """Run the model as its base model (adapters off); restores every requires_grad flag exactly.

    PEFT's own switch re-enables requires_grad on all active adapters when it exits; restoring the
    flags keeps deliberately frozen factors frozen.
    """
    from peft import PeftModel
    from peft.tuners.tuners_utils import BaseTunerLayer

    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        if isinstance(model, PeftModel):
            with model.disable_adapter():
                yield
        else:
            layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer) and not m.disable_adapters]
            try:
                for m in layers:
                    m.enable_adapters(False)
                yield
            finally:
                for m in layers:
                    m.enable_adapters(True)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
