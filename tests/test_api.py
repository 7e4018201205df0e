"""The top-level Python API mirrors the CLI: every advertised name resolves to the real object."""

from __future__ import annotations

import pytest

import forgetless


@pytest.mark.parametrize("name", [n for n in forgetless.__all__ if n != "__version__"])
def test_public_names_resolve(name):
    """Each name is the very object its module defines, and a function or a class."""
    import importlib

    value = getattr(forgetless, name)
    assert value is getattr(importlib.import_module(forgetless._API[name]), name)
    assert callable(value) and value.__name__ == name


def test_api_functions_are_the_module_functions():
    from forgetless.compare import compare
    from forgetless.eval import evaluate
    from forgetless.models import load_model

    assert forgetless.evaluate is evaluate and forgetless.compare is compare and forgetless.load_model is load_model
    with pytest.raises(AttributeError):
        forgetless.not_a_thing  # noqa: B018
