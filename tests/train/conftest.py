"""Tiny models built in code, and causal-LM batches with padding and -100 labels."""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

VOCAB = 64


def tiny_llama(seed: int = 0, dtype: torch.dtype = torch.float32) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
    )
    return LlamaForCausalLM(config).to(dtype)


def make_batch(seed: int = 0, batch_size: int = 4, length: int = 10) -> dict[str, torch.Tensor]:
    """Right padding, left padding, a 3-token prompt (-100) and one example with nothing to score."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, VOCAB, (batch_size, length), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, length - 3 :] = 0  # right padding
    attention_mask[min(3, batch_size - 1), :3] = 0  # left padding
    labels = input_ids.clone()
    labels[:, :3] = -100  # prompt
    labels[attention_mask == 0] = -100
    if batch_size > 4:
        labels[4] = -100  # an example with no scored token
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def lora_llama(seed: int = 0, dtype: torch.dtype = torch.float32):
    from peft import LoraConfig, get_peft_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_peft_model(tiny_llama(seed, dtype), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    return make_batch()


@pytest.fixture(scope="session")
def build_llama():
    return tiny_llama


@pytest.fixture(scope="session")
def build_batch():
    return make_batch


@pytest.fixture(scope="session")
def build_lora():
    return lora_llama
