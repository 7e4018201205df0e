"""TRL's SFTTrainer + LoRA, with EWC against forgetting and the forgetting monitor.

    python examples/trl_sft_ewc.py --max-steps 30 --out runs/trl-ewc
    forgetless eval smollm2-135m --adapter runs/trl-ewc/adapter --reference base --out after.json

Fine-tunes the built-in smollm2-135m on the bundled domain set (prompt/response pairs, learned on
the response only), with 25% general replay in the mix. Three forgetless pieces go into a plain
TRL script:

1. `PenaltyTrainerMixin` in front of `SFTTrainer`: loss = task loss + EWC penalty, each logged.
2. `build_penalties(trainer.model, ...)` once the trainer has added the adapters: EWC's Fisher is
   taken on general reference data (`reference_batches`), with the adapters switched off.
3. `ForgettingMonitor`: every `--monitor-every` steps, accuracy on general probes and KL to the base.

Writes OUT/adapter (the LoRA adapter), OUT/train_log.jsonl and OUT/monitor.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from datasets import Dataset
from peft import LoraConfig
from trl import SFTConfig, SFTTrainer

from forgetless.models import load_model
from forgetless.train.data import as_messages, read_records
from forgetless.train.integrations import (
    ForgettingMonitor,
    PenaltyTrainerMixin,
    build_penalties,
    reference_batches,
    select_probes,
)
from forgetless.train.replay import replay_count, replay_records, sample


class SFTTrainerWithPenalties(PenaltyTrainerMixin, SFTTrainer):
    """SFTTrainer whose loss adds the forgetless penalties in `self.regularizers`."""


def sft_rows(records: list) -> list[dict[str, Any]]:
    """Conversational prompt/completion rows: SFTTrainer then learns the completion only."""
    return [{"prompt": m[:-1], "completion": m[-1:]} for m in map(as_messages, records)]


def sft_dataset(path: str, replay_fraction: float) -> Dataset:
    """The domain rows plus general replay rows making up `replay_fraction` of the mix."""
    domain = read_records(path)
    replay = sample(replay_records("bundled"), replay_count(len(domain), replay_fraction), seed=0)
    return Dataset.from_list(sft_rows(domain) + sft_rows(replay))  # the Trainer shuffles


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="Built-in name, model folder or .gguf file.")
    p.add_argument("--data", default="builtin:domain/train.jsonl", help="Training JSONL (forgetless formats).")
    p.add_argument("--out", required=True, help="Output folder.")
    p.add_argument("--max-steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--learning-rate", type=float, default=2e-4)
    p.add_argument("--replay", type=float, default=0.25, help="Share of bundled general examples in the mix.")
    p.add_argument("--ewc", type=float, default=100.0, help="EWC lambda.")
    p.add_argument("--kl", type=float, default=0.0, help="KL-to-base beta; 0 leaves the KL term out "
                   "(with SFTTrainer it costs one more forward pass: its fused LM head returns no logits).")
    p.add_argument("--monitor-every", type=int, default=10)
    p.add_argument("--probes", type=int, default=40, help="Multiple-choice probe items of the monitor.")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    out = Path(args.out)
    loaded = load_model(args.model, dtype="float32")  # fp32 master weights; bf16 autocast on a GPU
    tok, gpu = loaded.tokenizer, loaded.device.type == "cuda"
    monitor = ForgettingMonitor(tok, select_probes(mc_items=args.probes, gen_items=max(1, args.probes // 4),
                                                   text_items=2), every=args.monitor_every)
    config = SFTConfig(output_dir=str(out / "checkpoints"), max_steps=args.max_steps,
                       per_device_train_batch_size=args.batch_size, learning_rate=args.learning_rate,
                       logging_steps=1, save_strategy="no", report_to="none", max_length=256, seed=0,
                       bf16=gpu, dataloader_pin_memory=gpu)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    data = sft_dataset(args.data, args.replay)
    trainer = SFTTrainerWithPenalties(model=loaded.model, args=config, train_dataset=data, processing_class=tok,
                                      peft_config=lora, callbacks=[monitor])
    # after the trainer added the adapters: EWC anchors them, its Fisher is taken with them switched off
    penalties = {"ewc": {"lambda": args.ewc}, **({"kl": {"beta": args.kl}} if args.kl else {})}
    reference = reference_batches(tok, examples=32, max_length=256)
    trainer.regularizers = build_penalties(trainer.model, penalties, reference)
    trainer.train()
    trainer.save_model(str(out / "adapter"))
    history = trainer.state.log_history
    (out / "train_log.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history))
    (out / "monitor.json").write_text(json.dumps(monitor.summary(), indent=2))
    return {"log": history, "monitor": monitor.summary(), "adapter": str(out / "adapter")}


if __name__ == "__main__":
    main()
