"""Shared fixtures: the real default model (loaded once), a tiny random model for plumbing, and a
private run history (commands record every run; tests must not write to the user's own history)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def private_history(tmp_path_factory):
    """FORGETLESS_HISTORY -> one temporary database for the whole session (subprocesses inherit it)."""
    path = tmp_path_factory.mktemp("history") / "history.sqlite"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FORGETLESS_HISTORY", str(path))
        yield path


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct, converted once and cached; shared, so tests must not train it in place."""
    from forgetless.models import load_model

    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2):
    """A 2-layer random Llama with SmolLM2's tokenizer and chat template, saved as an HF folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(smollm2.tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    smollm2.tokenizer.save_pretrained(folder)
    return folder
