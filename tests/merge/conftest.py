"""Tiny base / fully fine-tuned / LoRA run folders built from the session's tiny random Llama."""

from __future__ import annotations

import json

import pytest
import torch

from forgetless.models.loading import RUN_FILE

SUITE = [
    {"id": "q1", "type": "mc", "category": "geo", "question": "What is the capital of France?",
     "choices": ["Berlin", "Paris", "Rome", "Madrid"], "answer": 1},
    {"id": "q2", "type": "mc", "category": "life", "question": "What colour is fresh grass?",
     "choices": ["Purple", "Orange", "Green"], "answer": 2},
    {"id": "q3", "type": "mc", "category": "math", "question": "What is 2 + 2?", "choices": ["3", "4", "5"], "answer": 1},
    {"id": "g1", "type": "gen", "category": "geo", "prompt": "Capital of Italy? One word.", "answers": ["Rome"]},
    {"id": "c1", "type": "check", "category": "format", "prompt": "Say hi.", "checks": [{"kind": "max_words", "n": 3}]},
]
DOMAIN = [
    {"id": "d1", "type": "mc", "category": "products", "question": "What does the Zentrix Aura cost?",
     "choices": ["$129", "$149", "$109"], "answer": 0},
    {"id": "d2", "type": "mc", "category": "products", "question": "When did the Aura launch?",
     "choices": ["2018", "2021", "2024"], "answer": 1},
    {"id": "d3", "type": "gen", "category": "products", "prompt": "Who makes the Aura?", "answers": ["Zentrix"]},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def suites_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("merge-suites")
    return write_jsonl(folder / "tinygen.jsonl", SUITE), write_jsonl(folder / "tinydom.jsonl", DOMAIN)


@pytest.fixture(scope="session")
def full_run(tmp_path_factory, tiny_model_dir):
    """A 'fully fine-tuned' run: every weight perturbed except layer 1's MLP (as if frozen)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path_factory.mktemp("full-run")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layers.1.mlp" not in name:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    model.save_pretrained(run / "model")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(run / "model")
    (run / RUN_FILE).write_text(json.dumps({"base_model": str(tiny_model_dir), "model": "model"}))
    return run


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory, tiny_model_dir):
    """A LoRA run on q/v projections with random (non-zero) lora_B."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    run = tmp_path_factory.mktemp("lora-run")
    torch.manual_seed(2)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    model.save_pretrained(run / "adapter")
    (run / RUN_FILE).write_text(json.dumps({"base_model": str(tiny_model_dir), "adapter": "adapter"}))
    return run
