"""What does each anti-forgetting mitigation cost in training? Measured side by side in one run (issue #4).

    step time    one training step (forward, task loss + penalty, backward, clip, AdamW) of each variant:
                 full fine-tuning plain / +EWC / +L2-SP / +KL and LoRA plain / +EWC / +L2-SP / +KL, on a
                 fixed batch of the bundled domain data. Targets, against the plain step of the same kind:
                 EWC and L2-SP <= 1.05x, LoRA-EWC <= 1.10x, KL <= 1.45x.
    peak memory  of each variant, each in a fresh process (`--only VARIANT`), from its setup to the end of
                 its steps: the peak resident set on CPU (Linux VmHWM), torch.cuda.max_memory_allocated on CUDA.
    Fisher       forgetless's per-example (vmap) Fisher, as EWC's setup computes it, against the brute-force
                 loop (one backward per example) on the same examples: time (target >= 3x faster) and
                 values (must agree; the script exits 1 if they do not).
    monitor      `forgetless.train.train` with and without the forgetting monitor at its default interval
                 (target: <= 10% of the training time).

Side by side: the variants of one kind share one model and one AdamW state (a step costs the same whatever
the weights hold), so they run in the same process and are interleaved: each round times one step of
every variant, in an order rotated from round to round, and a variant's ratio is the median over rounds of
its step time over the plain step of the same kind in that round; load drift on a shared machine cancels.
The Fisher is timed chunk by chunk, alternating which of the two goes first.

Run: `python benchmarks/bench_train.py` (about 10 minutes on 2 idle CPU cores) or `--quick` (a smoke run).
Exit status: 0 even when a speed target is MISSED, 1 when the two Fisher estimates differ.
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
from forgetless.train.config import MonitorSection, TrainConfig
from forgetless.train.data import collator_for, read_records, tokenize_records
from forgetless.train.fisher import diagonal_fisher, fisher_bruteforce
from forgetless.train.recipe import apply_method
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


def measure_fisher(model: nn.Module, batches: list[Batch], device: torch.device) -> tuple[dict[str, Any], dict]:
    """Both estimates on the same examples, chunk by chunk, alternating which goes first.

    Returns the numbers and the vmap Fisher (reused by the EWC variants).
    """
    names = [n for n, p in model.named_parameters() if p.is_floating_point()]
    params = {n: p for n, p in model.named_parameters() if n in names}
    seconds = {"vmap": 0.0, "loop": 0.0}
    sums: dict[str, dict[str, Tensor]] = {"vmap": {}, "loop": {}}
    peaks: dict[str, float] = {}
    for i, batch in enumerate(batches):
        n = batch["input_ids"].shape[0]
        for how in (("loop", "vmap") if i % 2 == 0 else ("vmap", "loop")):
            release_memory()
            reset_peak(device)
            before = current_mb(device)  # the model and this benchmark's sums: not the estimator's
            sync(device)
            start = time.perf_counter()
            if how == "vmap":  # what EWC's setup runs, one chunk (EWC's default chunk size) per call
                part = diagonal_fisher(model, [batch], params=params, chunk_size=n, strategy="vmap")
            else:
                part = fisher_bruteforce(model, [batch], params=names)
            sync(device)
            seconds[how] += time.perf_counter() - start
            peaks[how] = max(peaks.get(how, 0.0), peak_mb(device) - before)
            for name, f in part.items():  # mean over the chunk -> sum over examples
                sums[how][name] = sums[how].get(name, 0) + f.double() * n
            del part
    total = sum(b["input_ids"].shape[0] for b in batches)
    fisher = {how: {n: (s / total).float() for n, s in sums[how].items()} for how in sums}
    numbers = {"examples": total, "chunk_size": batches[0]["input_ids"].shape[0],
               "vmap_seconds": round(seconds["vmap"], 3), "loop_seconds": round(seconds["loop"], 3),
               "speedup": round(seconds["loop"] / seconds["vmap"], 3),
               "extra_peak_mb_loop": round(peaks["loop"]), "extra_peak_mb_vmap": round(peaks["vmap"]),
               **fisher_agreement(fisher["vmap"], fisher["loop"])}
    return numbers, fisher["vmap"]


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
            "default_every": MonitorSection().every, "measurements": len(points), "measurement_seconds": points,
            "train_seconds_without": round(without, 2), "train_seconds_with": round(with_monitor, 2),
            "monitor_seconds": summary["seconds"],
            "share_self_reported": round(summary["seconds"] / with_monitor, 4),
            "share_measured": round((with_monitor - without) / with_monitor, 4),
            "share_steady_state": round(steady, 4)}


# --- report ------------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("ok" if ok else "MISSED")


def print_report(numbers: dict[str, Any]) -> None:
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
    if steps or memory:
        print(f"\n{'variant':11s} {'median step s':>13s} {'vs plain':>9s} {'target':>7s} {'':6s} {'CPU time':>9s} "
              f"{'peak MB':>8s} {'vs plain':>9s}")
    for variant in VARIANTS:
        s, m = steps.get(variant), memory.get(variant)
        plain = memory.get(variant.partition("+")[0])
        extra = f"{m['peak_mb'] - plain['peak_mb']:+d}" if m and plain else "-"
        target = TARGETS.get(variant)
        ratio = f"{s['ratio']:.3f}x" if s else "-"
        cpu_ratio = f"{s['cpu_ratio']:.3f}x" if s and "cpu_ratio" in s else "-"
        check = verdict(s["ratio"] <= target if s and target else None) if target else ""
        print(f"{variant:11s} {s['median_s'] if s else '-':>13} {ratio:>9s} "
              f"{f'<= {target:.2f}' if target else '':>7s} {check:6s} {cpu_ratio:>9s} {m['peak_mb'] if m else '-':>8} {extra:>9s}")
    if "fisher" in numbers:
        f = numbers["fisher"]
        print(f"\nFisher, {f['examples']} examples in chunks of {f['chunk_size']}: vmap {f['vmap_seconds']:.2f} s vs "
              f"loop {f['loop_seconds']:.2f} s = {f['speedup']:.2f}x faster (target >= {FISHER_TARGET:g}x: "
              f"{verdict(f['speedup'] >= FISHER_TARGET)}); values {'the same' if f['same'] else 'DIFFER'}: "
              f"max |diff| {f['max_abs_diff']:.2e}, {f['max_diff_over_tensor_max']:.2e} of the tensor's largest "
              f"entry (allowed {FISHER_RTOL:g}); peak MB above the resident model: loop {f['extra_peak_mb_loop']}, "
              f"vmap {f['extra_peak_mb_vmap']}")
    if "monitor" in numbers:
        m = numbers["monitor"]
        default = m["every"] == m["default_every"]
        print(f"\nmonitor every {m['every']} steps ({'the default' if default else 'not the default ' + str(m['default_every'])}), "
              f"{m['steps']} LoRA steps of batch {m['batch_size']}: training {m['train_seconds_without']:.1f} s without, "
              f"{m['train_seconds_with']:.1f} s with; {m['measurements']} measurements {m['measurement_seconds']} s")
        print(f"monitor share of training time: measured {100 * m['share_measured']:.1f}% (target <= "
              f"{100 * MONITOR_TARGET:g}%: {verdict(m['share_measured'] <= MONITOR_TARGET if default else None)}), "
              f"self-reported {100 * m['share_self_reported']:.1f}%, steady state (one measurement per "
              f"{m['every']} steps, the step-0 baseline amortised) {100 * m['share_steady_state']:.1f}%")


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
    parser.add_argument("--fisher-examples", type=int, default=None, help="default 16; quick 4")
    parser.add_argument("--fisher-chunk", type=int, default=EWCConfig().fisher_chunk_size,
                        help="examples per vmap call (default: EWC's fisher_chunk_size)")
    parser.add_argument("--memory-steps", type=int, default=2, help="steps run by each --only process")
    parser.add_argument("--monitor-every", type=int, default=None, help=f"default: the config default "
                        f"({MonitorSection().every}); quick 4")
    parser.add_argument("--monitor-steps", type=int, default=None, help="steps of each monitor run (default: one "
                        "interval)")
    parser.add_argument("--monitor-batch", type=int, default=None, help="default: the config default "
                        f"({TrainConfig.model_fields['batch_size'].default}); quick 2")
    parser.add_argument("--skip", action="append", default=[], choices=["fisher", "steps", "memory", "monitor"])
    parser.add_argument("--only", choices=VARIANTS, default=None, help="(internal) peak memory of one variant")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {"batch": (4, 2), "length": (128, 64), "rounds": (6, 3), "fisher_examples": (16, 4),
                "monitor_every": (MonitorSection().every, 4), "monitor_batch": (None, 2)}
    for key, (normal, short) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, short if quick else normal)
    args.monitor_steps = args.monitor_steps or args.monitor_every
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
        print("the vmap Fisher differs from the per-example loop", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
