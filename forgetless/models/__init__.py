"""Loading models: built-in names, folders, GGUF files, hub ids and run folders."""

from forgetless.models.builtin import BUILTINS, DEFAULT_MODEL, BuiltinModel
from forgetless.models.loading import LoadedModel, load_adapter, load_model

__all__ = ["BUILTINS", "DEFAULT_MODEL", "BuiltinModel", "LoadedModel", "load_adapter", "load_model"]
