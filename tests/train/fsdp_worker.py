"""One process of the FSDP2 check (tests/train/test_fsdp.py), started twice by torchrun on gloo.

Each process first trains an unsharded copy on the whole batch (the one-process run), then the
same model sharded by FSDP2's `fully_shard` on its half of the batch, with forgetless's penalties
set up before sharding, as the Trainer does. Both take SGD steps; rank 0 writes what each step
measured: loss, each penalty, gradient norm, and the largest relative gap of any gradient element.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/train/fsdp_worker.py full|lora OUT.json
"""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from transformers import LlamaConfig, LlamaForCausalLM

from forgetless.train.data import PENALTY_KEYS, PadCollator
from forgetless.train.regularizers import EWC, L2SP, KLToBase

STEPS, LR = 3, 0.2


def build(method: str) -> torch.nn.Module:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                 target_modules=["q_proj", "v_proj", "up_proj"]))
        for name, p in model.named_parameters():  # B = 0 would make every LoRA penalty 0 at the first step
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.02)
    return model


def penalties(model: torch.nn.Module, reference: list[dict], examples: list[dict]) -> list:
    """EWC, L2-SP and KL on precomputed top-k targets of the general rows, set up on the base model."""
    regs = [EWC({"lambda": 1.0, "fisher_cache": False}), L2SP({"alpha": 0.1}),
            KLToBase({"beta": 1.0, "examples": "general", "top_k": 8})]
    for reg in regs:
        reg.setup(model, reference_batches=reference)
    regs[2].prepare_examples(model, examples, PadCollator(pad_token_id=0))
    return regs


def train(model: torch.nn.Module, regs: list, batch: dict, trained: list, grad_sq) -> list[dict]:
    """SGD steps. The task loss and the KL are this process's means, averaged over processes by FSDP's
    gradient reduction; EWC and L2-SP are whole sums, each process's shard getting its own gradient."""
    optimizer = torch.optim.SGD(trained, lr=LR)
    rows = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        terms = {reg.name: reg.penalty(model) for reg in regs if reg.weights_only}  # before the forward, as the
        inputs = {k: v for k, v in batch.items() if k not in PENALTY_KEYS}     # trainer computes them
        outputs = model(**inputs)
        task = outputs.loss
        terms |= {reg.name: reg.penalty(model, batch, outputs) for reg in regs if not reg.weights_only}
        (task + sum(terms.values())).backward()
        rows.append({"task": task.item(), **{k: v.item() for k, v in terms.items()}, "grad_norm": grad_sq() ** 0.5,
                     "grads": [(p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad).clone()
                               for p in trained]})
        optimizer.step()
    return rows


def main() -> None:
    method, out = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(1)
    ids = torch.randint(0, 96, (4, 16))
    reference = [{"input_ids": ids[i:i + 1], "attention_mask": torch.ones(1, 16, dtype=torch.long),
                  "labels": ids[i:i + 1]} for i in range(4)]
    # rows 0 and 2 replayed (general): each process's half holds one, so its KL mean is half the whole's
    examples = [{"input_ids": ids[i].tolist(), "labels": ids[i].tolist(), "general": i % 2 == 0} for i in range(4)]
    collate = PadCollator(pad_token_id=0)

    whole = build(method)
    trained = [p for p in whole.parameters() if p.requires_grad]
    whole_regs = penalties(whole, reference, examples)
    one = train(whole, whole_regs, collate(examples), trained,
                lambda: sum(float(p.grad.square().sum()) for p in trained))

    model = build(method)
    regs = penalties(model, reference, examples)  # whole weights, before sharding, as in the Trainer
    mesh = init_device_mesh("cpu", (world,))
    layers = model.base_model.model.model.layers if method == "lora" else model.model.layers
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    trained = [p for p in model.parameters() if p.requires_grad]
    assert all(isinstance(p, DTensor) for p in trained)

    def grad_sq() -> float:  # each process its shards, then one sum
        local = torch.tensor(sum(float(p.grad.to_local().square().sum()) for p in trained), dtype=torch.float64)
        dist.all_reduce(local)
        return float(local)

    sharded = train(model, regs, collate(examples[rank * 2:(rank + 1) * 2]), trained, grad_sq)
    for row in sharded:  # what a one-process run logs: the means over processes of the task loss and the KL
        for key in ("task", "kl"):
            value = torch.tensor(row[key], dtype=torch.float64)
            dist.all_reduce(value)
            row[key] = float(value) / world
    shard_sizes = [p.to_local().numel() for p in regs[0].fisher.values()]
    full_sizes = [p.numel() for p in whole_regs[0].fisher.values()]

    def gap(a: list, b: list) -> float:  # the largest relative error of any gradient tensor
        return max(float((x - y).norm() / y.norm().clamp_min(1e-12)) for x, y in zip(a, b))

    if rank == 0:
        result = {"one": [{k: v for k, v in r.items() if k != "grads"} for r in one],
                  "sharded": [{k: v for k, v in r.items() if k != "grads"} for r in sharded],
                  "grad_gap": [gap(s["grads"], o["grads"]) for s, o in zip(sharded, one)],
                  "fisher_elements": {"held": sum(shard_sizes), "whole": sum(full_sizes)},
                  "fisher_is_dtensor": all(isinstance(f, DTensor) for f in regs[0].fisher.values())}
        with open(out, "w") as f:
            json.dump(result, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
