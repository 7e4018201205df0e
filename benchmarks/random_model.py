"""Write a randomly initialised model with a real model's architecture and tokenizer, for timings only.

Why: a step's or a Fisher's time depends on the shapes, not on the weights' values, and a machine that
cannot fetch or receive the real weights (an accelerator box without network) can still time them.
Numbers from such a model say nothing about accuracy or forgetting.

Run: python benchmarks/random_model.py FOLDER OUT [--seed 0]
FOLDER holds config.json and the tokenizer files (what `forgetless info` converts, minus the weights).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(args.folder), dtype=torch.float32)
    model.save_pretrained(args.out)
    for item in args.folder.iterdir():
        if item.is_file() and not (args.out / item.name).exists():
            shutil.copy2(item, args.out / item.name)
    print(f"{args.out}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M random parameters")


if __name__ == "__main__":
    main()
