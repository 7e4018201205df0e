"""Forgetless inside your own `Trainer` or TRL `SFTTrainer` script: penalties, reference data, the monitor.

    from trl import SFTTrainer
    from forgetless.train.integrations import (ForgettingMonitor, PenaltyTrainerMixin, build_penalties,
                                               reference_batches, select_probes)

    class SFTTrainerWithPenalties(PenaltyTrainerMixin, SFTTrainer):   # loss = task + sum(penalties)
        pass

    monitor = ForgettingMonitor(tokenizer, select_probes(), every=50)
    trainer = SFTTrainerWithPenalties(model=model, args=..., train_dataset=..., peft_config=lora,
                                      callbacks=[monitor])
    trainer.regularizers = build_penalties(trainer.model, {"ewc": {"lambda": 50.0}},
                                           reference_batches(tokenizer))
    trainer.train()

Build the penalties on `trainer.model`, i.e. after the trainer added the LoRA adapters (they are
what EWC anchors) and placed the model on its device. Replay is plain data: mix
`replay_records("bundled")` (or your own general examples) into the training set.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from forgetless.train.data import collator_for, tokenize_records
from forgetless.train.monitor import ForgettingMonitor, select_probes
from forgetless.train.regularizers import build_regularizer
from forgetless.train.regularizers.base import Batch
from forgetless.train.replay import replay_records, sample
from forgetless.train.trainer import PenaltyTrainerMixin

__all__ = ["ForgettingMonitor", "PenaltyTrainerMixin", "build_penalties", "reference_batches", "select_probes"]


def reference_batches(tokenizer: Any, *, source: str = "bundled", examples: int = 64, batch_size: int = 8,
                      max_length: int = 512, seed: int = 0, device: str | torch.device = "cpu") -> list[Batch]:
    """Padded batches of general examples the base model should keep doing well on (for EWC's Fisher).

    `source` is a replay source: "bundled" (shipped general prompt/response pairs) or a JSONL path.
    Drawn as the recipe draws them: `examples` of them, deterministic for `seed`.
    """
    pool = tokenize_records(replay_records(source), tokenizer, max_length).examples
    chosen = sample(pool, min(examples, len(pool)), seed)
    collate = collator_for(tokenizer)
    return [{k: v.to(device) for k, v in collate(chosen[i:i + batch_size]).items()}
            for i in range(0, len(chosen), batch_size)]


def build_penalties(model: nn.Module, specs: dict[str, dict[str, Any]],
                    batches: list[Batch] | None = None) -> list[tuple[str, Any]]:
    """The (log name, regularizer) list `PenaltyTrainerMixin` takes, each set up on `model` as it is now.

    specs: regularizer name -> its settings, e.g. {"ewc": {"lambda": 50.0}, "kl": {"beta": 0.1}};
    batches: reference data (needed by EWC), moved to the model's device here.
    """
    device = next(model.parameters()).device
    moved = [{k: v.to(device) for k, v in b.items()} for b in batches] if batches else None
    out = []
    for name, settings in specs.items():
        reg = build_regularizer(name, settings)
        reg.setup(model, reference_batches=moved)
        out.append((f"penalty_{name}", reg))
    return out
