"""What does each anti-forgetting mitigation cost in training? Measured side by side in one run (issue #4).

    step time    one training step (forward, task loss + penalty, backward, clip, AdamW) of each variant:
                 full fine-tuning plain / +EWC / +L2-SP / +KL and LoRA plain / +EWC / +L2-SP / +KL, on a
                 fixed batch of the bundled domain data. Targets, against the plain step of the same kind:
                 EWC and L2-SP <= 1.05x, LoRA-EWC <= 1.10x, KL <= 1.45x.
    peak memory  of each variant, each in a fresh process (`--only VARIANT`), from its setup to the end of
                 its steps: the peak resident set on CPU (Linux VmHWM), torch.cuda.max_memory_allocated on CUDA.
    Fisher       forgetless's per-example Fisher, as EWC's setup computes it on this device (`auto`: the
                 torch.func loop on CPU, vmap elsewhere) and with vmap forced, against the brute-force loop
                 (one backward per example) on the same examples: time (target >= 3x faster) and values
                 (must agree; the script exits 1 if they do not).
    monitor      `forgetless.train.train` (the default LoRA config, two monitor intervals long) with and without
                 the forgetting monitor at its default interval: the monitor's own seconds over the training
                 time (target: <= 10%), cross-checked against the difference of the two runs.

Side by side: the variants of one kind share one model and one AdamW state (a step costs the same whatever
the weights hold), so they run in the same process and are interleaved: each round times one step of
every variant, in an order rotated from round to round, and a variant's ratio is the median over rounds of
its step time over the plain step of the same kind in that round; load drift on a shared machine cancels.
The Fisher is timed chunk by chunk, in an order rotated from chunk to chunk.

Run: `python benchmarks/bench_train.py` (about 12 minutes on 2 idle CPU cores) or `--quick` (a smoke run).
Exit status: 0 even when a speed target is MISSED, 1 when a Fisher estimate differs from the loop.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from forgetless.models import load_model
from forgetless.train import validate_config
from forgetless.train.config import TrainConfig
from forgetless.train.data import collator_for, read_records, tokenize_records
from forgetless.train.fisher import diagonal_fisher, fisher_bruteforce
from forgetless.train.recipe import MONITOR_EVERY, apply_method
from forgetless.train.regularizers import REGULARIZERS
from forgetless.train.regularizers.ewc import EWCConfig

DATA = "builtin:domain/train.jsonl"
MITIGATIONS = ("ewc", "l2sp", "kl")
VARIANTS = [kind + (f"+{m}" if m else "") for kind in ("full", "lora") for m in (None, *MITIGATIONS)]
TARGETS = {"full+ewc": 1.05, "full+l2sp": 1.05, "full+kl": 1.45, "lora+ewc": 1.10, "lora+l2sp": 1.05, "lora+kl": 1.45}
FISHER_TARGET = 3.0  # at least this many times faster than the loop
MONITOR_TARGET = 0.10  # share of the training time
# Both Fisher estimates are fp32 squares of the same gradients, summed in other orders (batched vs one-example
# matmuls, an additive mask vs SDPA's causal kernel): measured within 2e-5 of each tensor's largest entry on
# smollm2-135m, 2e-7 on a tiny Llama. A real error (a wrong example, mask, shift or scale) moves entries by O(1)
# of that scale.
FISHER_RTOL = 1e-3
Batch = dict[str, Tensor]


# --- data --------------------------------------------------------------------------------------


def domain_examples(tokenizer: Any) -> list[dict[str, list[int]]]:
    """The bundled domain training set, tokenized as the recipe does with its default max_length."""
    return tokenize_records(read_records(DATA), tokenizer, TrainConfig.model_fields["max_length"].default).examples


def packed_batch(tokenizer: Any, rows: int, length: int, device: torch.device) -> Batch:
    """rows x length tokens: the domain examples laid end to end (with their own labels), cut into rows."""
    examples = domain_examples(tokenizer)
    ids = [t for ex in examples for t in ex["input_ids"]]
    labels = [t for ex in examples for t in ex["labels"]]
    n = rows * length
    if len(ids) < n:
        raise SystemExit(f"the domain data has {len(ids)} tokens; lower --batch or --length")

    def as_rows(tokens: list[int]) -> Tensor:
        return torch.tensor(tokens[:n], device=device).view(rows, length)

    return {"input_ids": as_rows(ids), "labels": as_rows(labels),
            "attention_mask": torch.ones(rows, length, dtype=torch.long, device=device)}


def fisher_batches(tokenizer: Any, n: int, chunk: int, device: torch.device) -> list[Batch]:
    """The first n domain examples, padded by the training collator, `chunk` per batch (as EWC reads them)."""
    examples = domain_examples(tokenizer)[:n]
    collate = collator_for(tokenizer)
    return [{k: v.to(device) for k, v in collate(examples[i:i + chunk]).items()} for i in range(0, n, chunk)]


# --- memory ------------------------------------------------------------------------------------


def _status_mb(key: str) -> float | None:
    """A memory line of Linux's /proc/self/status (VmHWM: peak resident set, VmRSS: resident now), in MiB."""
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    kib = next(line.split()[1] for line in status.read_text().splitlines() if line.startswith(f"{key}:"))
    return int(kib) / 2**10


def peak_mb(device: torch.device) -> float:
    """CUDA: the peak allocated since the last reset; CPU: the peak resident set since the last reset.

    On CPU that is Linux's VmHWM (resettable, and a fresh process starts its own); ru_maxrss elsewhere,
    which never resets and which a child process inherits from its parent.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def current_mb(device: torch.device) -> float:
    """Memory in use now (0 where it cannot be read: the peak is then reported as is)."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    return _status_mb("VmRSS") or 0.0


def reset_peak(device: torch.device) -> None:
    """Start a new peak from the memory in use now (on CPU only where Linux lets /proc/self/clear_refs do it)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS
    except OSError:
        pass


def release_memory() -> None:
    """Hand freed memory back to the OS (glibc keeps it otherwise): the Fisher's ~10 GB must not stay
    resident while the per-variant processes and the monitor runs work on a shared machine."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- the Fisher --------------------------------------------------------------------------------


def fisher_agreement(fast: dict[str, Tensor], slow: dict[str, Tensor]) -> dict[str, Any]:
    """Largest |fast - slow| in absolute terms and relative to each tensor's largest entry."""
    worst_abs = max(float((fast[n] - slow[n]).abs().max()) for n in slow)
    worst_rel = max(float((fast[n] - slow[n]).abs().max() / slow[n].abs().max().clamp_min(1e-30)) for n in slow)
    same = fast.keys() == slow.keys() and worst_rel <= FISHER_RTOL
    return {"max_abs_diff": worst_abs, "max_diff_over_tensor_max": worst_rel, "rtol": FISHER_RTOL, "same": same}


FISHER_METHODS = ("auto", "vmap", "loop")  # EWC's setup on this device; vmap forced; the brute-force loop


def fisher_call(how: str, model: nn.Module, batch: Batch, names: list[str]) -> dict[str, Tensor]:
    """One chunk's Fisher (the mean over its examples): forgetless's estimate (`auto`: what EWC's setup runs
    on this device, one call per chunk of its fisher_chunk_size examples; `vmap` forced) or the brute-force loop."""
    if how == "loop":
        return fisher_bruteforce(model, [batch], params=names)
    params = {n: p for n, p in model.named_parameters() if n in names}
    return diagonal_fisher(model, [batch], params=params, chunk_size=len(batch["input_ids"]), strategy=how)


def measure_fisher(model: nn.Module, batches: list[Batch], device: torch.device) -> tuple[dict[str, Any], dict]:
    """Every estimate on the same examples, chunk by chunk, in an order rotated from chunk to chunk, after one
    untimed example of each (first-call costs). A speed-up is the median over chunks of loop / method seconds.

    Returns the numbers and the `auto` Fisher (reused by the EWC variants).
    """
    names = [n for n, p in model.named_parameters() if p.is_floating_point()]
    for how in FISHER_METHODS:
        fisher_call(how, model, {k: v[:1] for k, v in batches[0].items()}, names)
    seconds: dict[str, list[float]] = {how: [] for how in FISHER_METHODS}
    sums: dict[str, dict[str, Tensor]] = {how: {} for how in FISHER_METHODS}
    peaks: dict[str, float] = {}
    for i, batch in enumerate(batches):
        n = batch["input_ids"].shape[0]
        for how in FISHER_METHODS[i % 3:] + FISHER_METHODS[:i % 3]:
            release_memory()
            reset_peak(device)
            before = current_mb(device)  # the model and this benchmark's sums: not the estimator's
            sync(device)
            start = time.perf_counter()
            part = fisher_call(how, model, batch, names)
            sync(device)
            seconds[how].append(time.perf_counter() - start)
            peaks[how] = max(peaks.get(how, 0.0), peak_mb(device) - before)
            for name, f in part.items():  # mean over the chunk -> sum over examples
                sums[how][name] = sums[how].get(name, 0) + f.double() * n
            del part
    total = sum(b["input_ids"].shape[0] for b in batches)
    fisher = {how: {n: (s / total).float() for n, s in sums[how].items()} for how in sums}
    auto = "vmap" if device.type != "cpu" else "loop"  # what diagonal_fisher's "auto" picks on this device
    numbers: dict[str, Any] = {"examples": total, "chunk_size": batches[0]["input_ids"].shape[0], "auto_is": auto,
                               "chunk_seconds": {how: [round(t, 3) for t in ts] for how, ts in seconds.items()}}
    for how in FISHER_METHODS:
        numbers[how] = {"seconds": round(sum(seconds[how]), 3), "extra_peak_mb": round(peaks[how])}
        if how != "loop":
            ratios = [lo / t for lo, t in zip(seconds["loop"], seconds[how])]
            numbers[how] |= {"speedup": round(statistics.median(ratios), 3), **fisher_agreement(fisher[how], fisher["loop"])}
    numbers["same"] = numbers["auto"]["same"] and numbers["vmap"]["same"]
    return numbers, fisher["auto"]


# --- training steps ----------------------------------------------------------------------------


@dataclass
class Arm:
    """One kind of training (full or LoRA): a model, its AdamW state, and the regularizer of each variant."""

    kind: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    regularizers: dict[str, Any] = field(default_factory=dict)  # variant name -> regularizer (None: plain)


def make_regularizer(name: str, model: nn.Module, fisher: dict[str, Tensor] | None) -> Any:
    """A regularizer with its default weight, set up as the recipe does (EWC on a given Fisher)."""
    reg_class = REGULARIZERS.get(name)
    reg = reg_class(fisher=fisher) if name == "ewc" else reg_class()
    reg.setup(model)
    if name == "ewc":
        reg.given_fisher = None  # the recipe keeps only the normalised copy made by setup
    return reg


def build_arm(kind: str, model: nn.Module, mitigations: tuple[str, ...], fisher: dict[str, Tensor] | None) -> Arm:
    """Full fine-tuning or the default LoRA section (r16, all-linear) on `model`, with each mitigation."""
    config = TrainConfig(data=DATA, method=kind)
    with warnings.catch_warnings():  # transformers' own deprecated internal call, as in the recipe
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model = apply_method(config, model)
    trained = [p for p in model.parameters() if p.requires_grad]
    arm = Arm(kind, model, torch.optim.AdamW(trained, lr=1e-5, weight_decay=config.weight_decay))
    arm.regularizers[kind] = None
    for name in mitigations:
        arm.regularizers[f"{kind}+{name}"] = make_regularizer(name, model, fisher)
    return arm


def train_step(arm: Arm, variant: str, batch: Batch) -> None:
    """loss = task + penalty, as ForgetlessTrainer computes it (the task forward's logits go to the penalty)."""
    outputs = arm.model(**batch)
    loss = outputs.loss
    reg = arm.regularizers[variant]
    if reg is not None:
        loss = loss + reg.penalty(arm.model, batch, outputs=outputs)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for g in arm.optimizer.param_groups for p in g["params"]], 1.0)
    arm.optimizer.step()
    arm.optimizer.zero_grad(set_to_none=True)


def time_steps(arms: list[Arm], batch: Batch, rounds: int, warmup: int, device: torch.device) -> dict[str, Any]:
    """Interleaved rounds; per variant: median seconds and the median per-round ratio to its plain step.

    Wall time is what the targets are about. On CPU the process's CPU time is kept too: other processes
    on a shared machine inflate it far less than the wall time.
    """
    owner = {v: arm for arm in arms for v in arm.regularizers}
    order = list(owner)
    wall: dict[str, list[float]] = {v: [] for v in order}
    cpu: dict[str, list[float]] = {v: [] for v in order}
    for r in range(warmup + rounds):
        shift = r % len(order)
        for variant in order[shift:] + order[:shift]:
            sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            train_step(owner[variant], variant, batch)
            sync(device)
            if r >= warmup:
                wall[variant].append(time.perf_counter() - start)
                cpu[variant].append(time.process_time() - start_cpu)
    out = {}
    for variant in order:
        plain = owner[variant].kind
        out[variant] = {"median_s": round(statistics.median(wall[variant]), 4),
                        "ratio": round(statistics.median(t / p for t, p in zip(wall[variant], wall[plain])), 4),
                        "seconds": [round(t, 4) for t in wall[variant]]}
        if device.type == "cpu":
            out[variant] |= {"cpu_median_s": round(statistics.median(cpu[variant]), 4),
                             "cpu_ratio": round(statistics.median(t / p for t, p in zip(cpu[variant], cpu[plain])), 4)}
    return out


def step_times(loaded: Any, args: argparse.Namespace, fisher: dict[str, Tensor]) -> dict[str, Any]:
    device = loaded.device
    batch = packed_batch(loaded.tokenizer, args.batch, args.length, device)
    full = copy.deepcopy(loaded.model)
    arms = [build_arm("full", full, MITIGATIONS, fisher), build_arm("lora", loaded.model, MITIGATIONS, fisher)]
    fisher.clear()
    return time_steps(arms, batch, args.rounds, args.warmup, device)


# --- peak memory, one variant per process ------------------------------------------------------


def only_variant(args: argparse.Namespace) -> dict[str, Any]:
    """Load, set up one variant (EWC on a stand-in Fisher of ones: same tensors), run a few steps."""
    kind, _, mitigation = args.only.partition("+")
    loaded = load_model(args.model, device=args.device, dtype="float32")
    device = loaded.device
    batch = packed_batch(loaded.tokenizer, args.batch, args.length, device)
    after_load = peak_mb(device)
    reset_peak(device)
    fisher = {n: torch.ones_like(p) for n, p in loaded.model.named_parameters()} if mitigation == "ewc" else None
    arm = build_arm(kind, loaded.model, (mitigation,) if mitigation else (), fisher)
    del fisher
    gc.collect()
    for _ in range(args.memory_steps):
        train_step(arm, args.only, batch)
    return {"variant": args.only, "peak_mb": round(peak_mb(device)), "peak_mb_after_load": round(after_load)}


def peak_memory(args: argparse.Namespace) -> dict[str, Any]:
    """Each variant in a fresh process: no allocator cache or leftover of another variant counts."""
    out = {}
    for variant in VARIANTS:
        command = [sys.executable, __file__, "--only", variant, "--model", args.model, "--batch", str(args.batch),
                   "--length", str(args.length), "--memory-steps", str(args.memory_steps)]
        command += ["--device", args.device] if args.device else []
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"--only {variant} failed:\n{done.stderr[-2000:]}")
        out[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


# --- the forgetting monitor --------------------------------------------------------------------


def train_seconds(result: Any) -> float:
    """The Trainer's own train_runtime (monitor callbacks included), else the whole run's time."""
    runtimes = [row["train_runtime"] for row in result.log_history if "train_runtime" in row]
    return float(runtimes[-1]) if runtimes else float(result.seconds)


def monitor_overhead(args: argparse.Namespace) -> dict[str, Any]:
    """The same short default LoRA run without and with the monitor (one after the other)."""
    from forgetless.train import train

    folder = Path(tempfile.mkdtemp(prefix="bench-train-"))
    base = {"model": args.model, "data": DATA, "max_steps": args.monitor_steps, "save_steps": args.monitor_steps + 1,
            **({"batch_size": args.monitor_batch} if args.monitor_batch else {})}
    try:
        plain = train(validate_config({**base, "out": str(folder / "plain")}), progress=False)
        watched = train(validate_config({**base, "out": str(folder / "monitor"),
                                         "monitor": {"every": args.monitor_every}}), progress=False)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    without, with_monitor = train_seconds(plain), train_seconds(watched)
    summary = watched.monitor
    points = [p["seconds"] for p in summary["points"]]
    later = points[1:] or points  # the first measurement also scores the base model, once per run
    steady = statistics.mean(later) / (args.monitor_every * without / args.monitor_steps + statistics.mean(later))
    return {"steps": args.monitor_steps, "every": args.monitor_every,
            "batch_size": args.monitor_batch or TrainConfig.model_fields["batch_size"].default,
            "default_every": MONITOR_EVERY, "measurements": len(points), "measurement_seconds": points,
            "train_seconds_without": round(without, 2), "train_seconds_with": round(with_monitor, 2),
            "monitor_seconds": summary["seconds"],
            "share_self_reported": round(summary["seconds"] / with_monitor, 4),
            "share_measured": round((with_monitor - without) / with_monitor, 4),
            "share_steady_state": round(steady, 4)}


# --- report ------------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("ok" if ok else "MISSED")


def print_variants(numbers: dict[str, Any]) -> None:
    steps, memory = numbers.get("steps", {}), numbers.get("memory", {})
    if steps:
        print(f"\nstep time on {numbers['model']}, batch {numbers['batch'][0]} x {numbers['batch'][1]} tokens: the "
              f"variants of one kind share one model and AdamW state; {numbers['rounds']} interleaved rounds (order "
              f"rotated each round) after {numbers['warmup']} untimed; ratio = median over rounds of step / plain "
              f"step of the same kind in that round (CPU time: the same ratio of the process's CPU seconds, "
              f"which other processes inflate less than the wall time)")
    if memory:
        print(f"peak MB: each variant in a fresh process, from its setup to the end of {numbers['memory_steps']} "
              f"steps (EWC on a stand-in Fisher; estimating it is the Fisher line's peak)")
    if not (steps or memory):
        return
    print(f"\n{'variant':11s} {'median step s':>13s} {'vs plain':>9s} {'target':>7s} {'':6s} {'CPU time':>9s} "
          f"{'peak MB':>8s} {'vs plain':>9s}")
    for variant in VARIANTS:
        s, m, plain = steps.get(variant), memory.get(variant), memory.get(variant.partition("+")[0])
        target = TARGETS.get(variant)
        check = verdict(s["ratio"] <= target if s else None) if target else ""
        median = f"{s['median_s']:.3f}" if s else "-"
        ratio = f"{s['ratio']:.3f}x" if s else "-"
        cpu = f"{s['cpu_ratio']:.3f}x" if s and "cpu_ratio" in s else "-"
        peak = str(m["peak_mb"]) if m else "-"
        extra = f"{m['peak_mb'] - plain['peak_mb']:+d}" if m and plain else "-"
        limit = f"<= {target:.2f}" if target else ""
        print(f"{variant:11s} {median:>13s} {ratio:>9s} {limit:>7s} {check:6s} {cpu:>9s} {peak:>8s} {extra:>9s}")


def print_fisher(f: dict[str, Any]) -> None:
    loop = f["loop"]
    print(f"\nFisher, {f['examples']} examples in chunks of {f['chunk_size']}, against the brute-force loop "
          f"({loop['seconds']:.2f} s, peak {loop['extra_peak_mb']} MB above the resident model; target >= "
          f"{FISHER_TARGET:g}x faster, values within {FISHER_RTOL:g} of each tensor's largest entry):")
    for how, label in (("auto", f"forgetless (auto = {f['auto_is']} here)"), ("vmap", "forgetless vmap")):
        m = f[how]
        print(f"  {label:30s} {m['seconds']:8.2f} s  {m['speedup']:5.2f}x faster (median over chunks): "
              f"{verdict(m['speedup'] >= FISHER_TARGET):6s} values {'the same' if m['same'] else 'DIFFER'} "
              f"(max |diff| {m['max_abs_diff']:.2e}, {m['max_diff_over_tensor_max']:.2e} relative); "
              f"peak {m['extra_peak_mb']} MB")


def print_monitor(m: dict[str, Any]) -> None:
    """The target is judged on the monitor's own timer (one run); the two runs' difference cross-checks it."""
    default = m["every"] == m["default_every"]
    interval = "the default" if default else f"not the default {m['default_every']}"
    print(f"\nmonitor every {m['every']} steps ({interval}), {m['steps']} LoRA steps of batch {m['batch_size']}: "
          f"training {m['train_seconds_without']:.1f} s without, {m['train_seconds_with']:.1f} s with; "
          f"{m['measurements']} measurements {m['measurement_seconds']} s")
    own, diff = m["share_self_reported"], m["share_measured"]
    drift = " (the runs went one after the other: load drift between them shows here)" if abs(diff - own) > 0.03 else ""
    print(f"monitor share of the training time: {100 * own:.1f}% by its own timer (target <= "
          f"{100 * MONITOR_TARGET:g}%: {verdict(own <= MONITOR_TARGET if default else None)}); {100 * diff:.1f}% as "
          f"the difference of the two runs{drift}; steady state (one measurement per {m['every']} steps, the step-0 "
          f"baseline amortised) {100 * m['share_steady_state']:.1f}%")


def print_report(numbers: dict[str, Any]) -> None:
    print_variants(numbers)
    if "fisher" in numbers:
        print_fisher(numbers["fisher"])
    if "monitor" in numbers:
        print_monitor(numbers["monitor"])


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="a built-in name or a Hugging Face folder")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: the best available)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: smaller batch, fewer rounds and examples, "
                        "monitor every 4 steps (not its default interval)")
    parser.add_argument("--batch", type=int, default=None, help="rows of the fixed batch (default 4; quick 2)")
    parser.add_argument("--length", type=int, default=None, help="tokens per row (default 128; quick 64)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds of every variant (default 6; quick 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--fisher-examples", type=int, default=None, help="default 24; quick 4")
    parser.add_argument("--fisher-chunk", type=int, default=EWCConfig().fisher_chunk_size,
                        help="examples per vmap call (default: EWC's fisher_chunk_size)")
    parser.add_argument("--memory-steps", type=int, default=2, help="steps run by each --only process")
    parser.add_argument("--monitor-every", type=int, default=None, help=f"default: the config default "
                        f"({MONITOR_EVERY}); quick 4")
    parser.add_argument("--monitor-steps", type=int, default=None, help="steps of each monitor run (default: two "
                        "intervals)")
    parser.add_argument("--monitor-batch", type=int, default=None, help="default: the config default "
                        f"({TrainConfig.model_fields['batch_size'].default}); quick 2")
    parser.add_argument("--skip", action="append", default=[], choices=["fisher", "steps", "memory", "monitor"])
    parser.add_argument("--only", choices=VARIANTS, default=None, help="(internal) peak memory of one variant")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {"batch": (4, 2), "length": (128, 64), "rounds": (6, 3), "fisher_examples": (24, 4),
                "monitor_every": (MONITOR_EVERY, 4), "monitor_batch": (None, 2)}
    for key, (normal, short) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, short if quick else normal)
    args.monitor_steps = args.monitor_steps or 2 * args.monitor_every
    return args


def machine() -> dict[str, Any]:
    import transformers

    return {"cpus": os.cpu_count(), "torch": torch.__version__, "transformers": transformers.__version__,
            "threads": torch.get_num_threads(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def measure_in_process(args: argparse.Namespace, numbers: dict[str, Any], progress: Any) -> None:
    """The Fisher and the step times, which share one loaded model."""
    if "fisher" in args.skip and "steps" in args.skip:
        return
    loaded = load_model(args.model, device=args.device, dtype="float32")
    numbers["device"] = str(loaded.device)
    fisher: dict[str, Tensor] = {}
    if "fisher" not in args.skip:
        batches = fisher_batches(loaded.tokenizer, args.fisher_examples, args.fisher_chunk, loaded.device)
        numbers["fisher"], fisher = measure_fisher(loaded.model, batches, loaded.device)
        progress("fisher")
    if "steps" not in args.skip:
        if not fisher:  # EWC's step does not depend on the Fisher's values
            fisher = {n: torch.ones_like(p) for n, p in loaded.model.named_parameters()}
        numbers["steps"] = step_times(loaded, args, fisher)
        progress("steps")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.only:
        print(json.dumps(only_variant(args)))
        return 0
    numbers: dict[str, Any] = {"argv": sys.argv[1:] if argv is None else argv, "model": args.model,
                               "batch": [args.batch, args.length], "rounds": args.rounds, "warmup": args.warmup,
                               "memory_steps": args.memory_steps, "machine_before": machine()}
    print(f"machine: {numbers['machine_before']}", flush=True)
    start = time.perf_counter()

    def progress(section: str) -> None:  # a long run keeps what it measured if it is stopped later
        print(f"[{time.perf_counter() - start:6.0f} s] {section} done, load average {machine()['load_average']}",
              flush=True)
        if args.json:
            args.json.write_text(json.dumps(numbers, indent=2) + "\n")

    measure_in_process(args, numbers, progress)
    release_memory()
    if "memory" not in args.skip:
        numbers["memory"] = peak_memory(args)
        progress("memory")
    if "monitor" not in args.skip:
        numbers["monitor"] = monitor_overhead(args)
        progress("monitor")
    numbers["machine_after"] = machine()
    numbers["seconds"] = round(time.perf_counter() - start, 1)
    progress("all")
    print_report(numbers)
    print(f"\nload average after: {numbers['machine_after']['load_average']} on {os.cpu_count()} CPUs; "
          f"{numbers['seconds']:.0f} s in all")
    if "fisher" in numbers and not numbers["fisher"]["same"]:
        print("a Fisher estimate differs from the brute-force per-example loop", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
