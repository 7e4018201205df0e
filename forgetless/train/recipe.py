"""The training recipe, top to bottom: model -> data + replay -> method -> regularizers -> Trainer -> run folder.

    loss = task_loss + sum_i penalty_i

The run folder holds everything the result depends on:

    RUN/config.yaml            the resolved config (preset values filled in)
    RUN/checkpoints/           Trainer checkpoints, for --resume
    RUN/adapter/ or RUN/model/ the LoRA adapter (safetensors) or the fully fine-tuned model
    RUN/train_log.jsonl        loss, each penalty, learning rate, monitor metrics, per logging step
    RUN/forgetless-run.json    base model, method, steps, seed, versions, timing, data counts, warnings

`forgetless eval RUN` (or `load_model(RUN)`) loads base + adapter, or the full model, from it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import yaml
from transformers.trainer_callback import PrinterCallback

from forgetless.errors import ForgetlessError, Interrupted
from forgetless.history import records
from forgetless.io import atomic_write_json, atomic_write_text, check_output_path, write_jsonl
from forgetless.lint import find_boilerplate
from forgetless.models.device import native_bf16, pick_device
from forgetless.models.loading import RUN_FILE, LoadedModel, load_model
from forgetless.train import presets
from forgetless.train.config import TrainConfig, dump_config
from forgetless.train.data import (
    GROUP_WINDOW,
    ExampleDataset,
    Tokenized,
    collator_for,
    group_by_length,
    read_records,
    responses,
    tokenize_records,
    without_boilerplate,
)
from forgetless.train.freeze import apply_lora, freeze_bottom, trainable_summary
from forgetless.train.replay import mix, replay_count, replay_records, sample
from forgetless.train.trainer import ForgetlessTrainer, LogLastStep, NonFiniteGuard, SaveOnInterrupt

Notify = Callable[[str], None]
MONITOR_CHECKS = 4  # without `monitor.every`: step 0 and about this many checks after
MONITOR_EVERY = 50  # ... or every this many steps when the step count is not known
TIMED_BATCHES = GROUP_WINDOW - 1  # after a warm-up batch, to time a step for `max_seconds`: the first window
# Settings a checkpoint depends on (weights' shapes, data order); others may change on --resume.
MUST_MATCH_ON_RESUME = {"model", "data", "method", "lora", "freeze", "seed", "batch_size",
                        "gradient_accumulation_steps", "max_length", "replay", "dtype"}


@dataclass
class TrainData:
    """The shuffled training stream, the regularizers' reference examples, and what went into them."""

    stream: list[dict[str, list[int]]]
    reference: list[dict[str, list[int]]]
    counts: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    in_order: bool = False  # built for max_steps, each pass shuffled: the trainer reads it in order


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    final_loss: float | None
    seconds: float
    warnings: list[str]
    counts: dict[str, Any]
    trainable: dict[str, Any]
    log_history: list[dict[str, Any]]
    monitor: dict[str, Any] | None = None  # the forgetting curve, its overhead, best step inside the budget
    monitor_baseline: dict[str, Any] | None = field(default=None, repr=False)  # reusable: `train(monitor_baseline=)`


def _history(result: TrainResult, config: TrainConfig, **_: Any) -> dict[str, Any]:
    return {"model": config.model, "config": config.model_dump(mode="json"), "paths": {"run_dir": result.run_dir},
            "metrics": {"steps": result.steps, "final_loss": result.final_loss, "seconds": result.seconds,
                        "data": result.counts, "monitor": result.monitor}}


@records("train", _history)
def train(config: TrainConfig, *, callbacks: Sequence[Any] = (), resume: bool = False, progress: bool = True,
          notify: Notify | None = None, monitor_baseline: dict[str, Any] | None = None) -> TrainResult:
    """Fine-tune `config.model` on `config.data` and write the run folder `config.out`.

    `callbacks` are extra `transformers.TrainerCallback`s (the forgetting monitor plugs in here);
    `notify` receives each warning before training starts; `resume` continues from the last
    checkpoint in RUN/checkpoints with the same data order. `monitor_baseline`: an earlier result's
    `monitor_baseline`, from the same base model and monitor settings (the monitor skips step 0's work).
    """
    started, clock = datetime.now(timezone.utc), time.time()
    main = is_main_process()
    notify = notify if notify and main else (lambda message: None)
    config = presets.resolve(config)
    existed = bool(config.out) and Path(config.out).expanduser().exists()
    run_dir = prepare_run_dir(config, resume, notify) if main else Path(config.out).expanduser()
    restore = seed_everything(config.seed, config.deterministic)
    fitting = False
    try:
        with _quiet_deprecations():
            loaded = load_base(config)
            attention = training_attention(config)
            if attention:
                loaded.model.set_attn_implementation(attention)
            data = build_data(config, loaded)
            risks = presets.risk_warnings(config, data.counts["domain_examples"]) + data.notes
            for message in risks:
                notify(message)
            model = apply_method(config, loaded.model)
            trainable = trainable_summary(model)
            regularizers = setup_regularizers(config, model, data.reference, collator_for(loaded.tokenizer),
                                              data.stream)
            guard, interrupt = NonFiniteGuard(), SaveOnInterrupt()
            trainer = ForgetlessTrainer(
                model=model, args=training_arguments(config, run_dir, progress=progress),
                train_dataset=ExampleDataset(data.stream), data_collator=collator_for(loaded.tokenizer),
                processing_class=loaded.tokenizer, callbacks=[interrupt, guard, LogLastStep(), *callbacks],
                regularizers=regularizers, guard=guard, in_order=data.in_order)
            if not progress:
                trainer.remove_callback(PrinterCallback)  # it prints every log line when the bar is off
            checkpoint = last_checkpoint(run_dir) if resume else None
            monitor = build_monitor(config, loaded.tokenizer, monitor_baseline)
            if config.max_seconds:
                config = fit_time_budget(trainer, config, data.stream, checkpoint, run_dir if main else None, notify,
                                         started=clock, monitor=monitor)
            if monitor:
                monitor.every = monitor_every(config)  # the checks follow the steps that fit
                trainer.add_callback(monitor)
            fitting = True
            fit(trainer, checkpoint)
    except BaseException:
        if not fitting and not resume and main:  # failed before training (no model, bad data): leave nothing behind
            discard_run_dir(run_dir, existed)
        raise
    finally:
        restore()
    history = [dict(row) for row in trainer.state.log_history]
    if main:
        write_jsonl(run_dir / "train_log.jsonl", history)
    if guard.bad is not None:
        raise nonfinite_error(guard, run_dir, config)
    if interrupt.step is not None:
        raise Interrupted(f"interrupted at step {interrupt.step} of {trainer.state.max_steps}; checkpoint saved",
                          where=last_checkpoint(run_dir), hint=f"continue with --resume --out {run_dir}")
    save_weights(trainer, config, loaded, run_dir)
    result = TrainResult(run_dir=run_dir, steps=trainer.state.global_step, final_loss=_final_loss(history),
                         seconds=round(time.time() - clock, 2), warnings=risks, counts=data.counts,
                         trainable=trainable, log_history=history,
                         monitor=monitor.summary() if monitor else None,
                         monitor_baseline=monitor.base if monitor else None)
    if trainer.is_world_process_zero():
        write_run_file(result, config, loaded, started, resumed_from=checkpoint)
    return result


def is_main_process() -> bool:
    """Rank 0 under `accelerate launch`/`torchrun` (or a single process): the one that writes the run folder."""
    return int(os.environ.get("RANK", "0")) == 0


@contextmanager
def _quiet_deprecations() -> Iterator[None]:
    """transformers' own deprecated internal calls: not actionable by users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def fit(trainer: ForgetlessTrainer, checkpoint: str | None) -> None:
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    except RuntimeError as e:
        if "deterministic" not in str(e):
            raise
        raise ForgetlessError(f"an operation has no deterministic implementation here: "
                              f"{str(e).splitlines()[0][:160]}", hint="set deterministic: false") from None


# --- run folder ---------------------------------------------------------------------------------


def prepare_run_dir(config: TrainConfig, resume: bool, notify: Notify) -> Path:
    """Check the run folder before any compute: a new run never overwrites an old one."""
    if not config.out:
        raise ForgetlessError("no run folder given", hint="set `out:` in the config or pass --out DIR")
    run_dir = Path(config.out).expanduser()
    if run_dir.exists() and not run_dir.is_dir():
        raise ForgetlessError("run folder path is a file", where=run_dir)
    check_output_path(run_dir / RUN_FILE)  # refuse an unwritable location before any compute
    if resume:
        if last_checkpoint(run_dir) is None:
            raise ForgetlessError("nothing to resume: no checkpoint in this run folder", where=run_dir / "checkpoints",
                                  hint="drop --resume to start the run")
        saved = run_dir / "config.yaml"
        if saved.exists():
            changed = _changed_keys(yaml.safe_load(saved.read_text()), config.model_dump(mode="json"))
            fixed = [k for k in changed if k.split(".")[0] in MUST_MATCH_ON_RESUME]
            if fixed:
                raise ForgetlessError(f"cannot resume with changed {', '.join(fixed)}: the checkpoint was made "
                                      "with other weights or another data order", where=saved,
                                      hint="restore those settings, or start a new run")
            if changed:
                notify(f"resuming with settings that differ from the saved config: {', '.join(changed)}")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise ForgetlessError("run folder is not empty", where=run_dir,
                              hint="pass --resume to continue that run, or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", dump_config(config))
    return run_dir


def discard_run_dir(run_dir: Path, existed: bool) -> None:
    """Undo `prepare_run_dir` for a new run (its folder was absent or empty): no half-made run folder stays."""
    shutil.rmtree(run_dir, ignore_errors=True)
    if existed:
        run_dir.mkdir(parents=True, exist_ok=True)


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = [k for k in dict.fromkeys([*old, *new]) if k != "out" or prefix]
        return [c for k in keys for c in _changed_keys(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]


def last_checkpoint(run_dir: Path) -> str | None:
    """The newest *complete* checkpoint: the Trainer writes trainer_state.json last, so a run killed while
    saving leaves a folder without it, which must not be resumed from (it would restart at step 0)."""
    folder = Path(run_dir) / "checkpoints"
    done = [p for p in folder.glob("checkpoint-*") if p.name[len("checkpoint-"):].isdigit()
            and (p / "trainer_state.json").is_file()] if folder.is_dir() else []
    return str(max(done, key=lambda p: int(p.name[len("checkpoint-"):]))) if done else None


def build_monitor(config: TrainConfig, tokenizer: Any, baseline: dict[str, Any] | None = None) -> Any:
    """The forgetting monitor from the config's `monitor:` section (None when it is absent)."""
    if config.monitor is None:
        return None
    from forgetless.train.monitor import ForgettingMonitor, select_probes

    m = config.monitor
    return ForgettingMonitor(tokenizer, select_probes(mc_items=m.mc_items, gen_items=m.gen_items),
                             every=monitor_every(config), max_drop=m.budget.max_drop, max_kl=m.budget.max_kl,
                             early_stop=m.early_stop, baseline=baseline)


def monitor_every(config: TrainConfig) -> int:
    """Steps between the monitor's checks: `monitor.every`, or MONITOR_CHECKS checks over a known count."""
    every = config.monitor.every if config.monitor else None
    return every or (math.ceil(config.max_steps / MONITOR_CHECKS) if config.max_steps else MONITOR_EVERY)


def save_weights(trainer: Any, config: TrainConfig, loaded: LoadedModel, run_dir: Path) -> None:
    """RUN/adapter (LoRA, safetensors) or RUN/model (full model + tokenizer), swapped in atomically."""
    name = "adapter" if config.method == "lora" else "model"
    target, tmp = run_dir / name, run_dir / f".{name}.tmp"
    if trainer.is_world_process_zero():  # another process must not delete what rank 0 is writing
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))  # adapter only for a PEFT model; tokenizer too (processing_class)
    if trainer.is_world_process_zero():
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)


def write_run_file(result: TrainResult, config: TrainConfig, loaded: LoadedModel, started: datetime,
                   resumed_from: str | None) -> None:
    import peft
    import transformers

    lora = config.method == "lora"
    run = {
        "base_model": config.model, "base_path": loaded.path, "method": config.method,
        **({"adapter": "adapter"} if lora else {"model": "model"}),
        "config": "config.yaml", "log": "train_log.jsonl",
        "steps": result.steps, "seed": config.seed, "final_loss": result.final_loss,
        "data": result.counts, "trainable": {k: v for k, v in result.trainable.items() if k != "text"},
        "device": str(loaded.device), "dtype": str(next(loaded.model.parameters()).dtype).removeprefix("torch."),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": result.seconds, "resumed_from": resumed_from, "warnings": result.warnings,
        "monitor": result.monitor,
    }
    atomic_write_json(result.run_dir / RUN_FILE, run)


def _final_loss(history: list[dict[str, Any]]) -> float | None:
    losses = [row["loss"] for row in history if "loss" in row]
    return losses[-1] if losses else None


def nonfinite_error(guard: NonFiniteGuard, run_dir: Path, config: TrainConfig) -> ForgetlessError:
    bad = guard.bad
    terms = ", ".join(f"{k}={v:g}" for k, v in bad.terms.items())
    good = last_checkpoint(run_dir)
    keep = f"last good checkpoint: {good}" if good else "no checkpoint was saved before it"
    return ForgetlessError(f"loss became non-finite at step {bad.step} ({terms}); training stopped, {keep}",
                           hint=f"lower learning_rate (now {config.learning_rate:g}) or the regularizer weights")


# --- setup --------------------------------------------------------------------------------------


def seed_everything(seed: int, deterministic: bool) -> Callable[[], None]:
    """Seed Python, NumPy and torch, and pick deterministic kernels; returns a function undoing the latter."""
    from transformers import set_seed

    previous = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
                torch.backends.cuda.cudnn_sdp_enabled())
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
        torch.use_deterministic_algorithms(True)  # also makes flash/mem-efficient attention deterministic
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.enable_cudnn_sdp(False)  # cuDNN attention has no deterministic backward

    def restore() -> None:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.benchmark = previous[1]
        torch.backends.cuda.enable_cudnn_sdp(previous[2])

    set_seed(seed)
    return restore


def training_dtype(config: TrainConfig, device: torch.device | None = None) -> str:
    """The weights' dtype: `dtype`, or for auto fp32 master weights, except a LoRA base on a bf16 GPU."""
    if config.dtype != "auto":
        return config.dtype
    dev = device or pick_device(config.device)
    return "bfloat16" if dev.type == "cuda" and native_bf16(dev) and config.method == "lora" else "float32"


def load_base(config: TrainConfig) -> LoadedModel:
    """Load the base model in its training dtype: fp32 master weights, except a LoRA base on a bf16 GPU."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = "cpu" if distributed else config.device  # the Trainer places each process's copy
    dtype = training_dtype(config)
    if dtype == "float16" and config.method == "full":
        raise ForgetlessError("float16 weights cannot be fully fine-tuned (the gradient scaler refuses them)",
                              hint="use dtype: bfloat16 or float32")
    loaded = load_model(config.model, device=device, dtype=dtype)
    if loaded.adapter is not None:
        raise ForgetlessError("the model is a LoRA run folder; training on top of an adapter is not supported",
                              where=config.model, hint="train from its base model, or merge the adapter first")
    return loaded


EAGER_MAX_LENGTH = 256  # on a CPU, eager attention trains faster than the fused kernel up to about here


def training_attention(config: TrainConfig) -> str | None:
    """The attention kernel to train with; None keeps the model's own (sdpa)."""
    if config.attention != "auto":
        return config.attention
    on_cpu = pick_device(config.device).type == "cpu"
    return "eager" if on_cpu and config.max_length <= EAGER_MAX_LENGTH else None


def build_data(config: TrainConfig, loaded: LoadedModel) -> TrainData:
    """Tokenize the domain set, add replay at an exact share of the mix, pick reference examples."""
    tok = loaded.tokenizer
    records = read_records(config.data)
    boilerplate = find_boilerplate([r for record in records for r in responses(record)])
    if config.strip_boilerplate:
        records = [without_boilerplate(record, boilerplate) for record in records]
    domain = tokenize_records(records, tok, config.max_length)
    if not domain.examples:
        raise ForgetlessError(f"no example has a response token within max_length={config.max_length}",
                              where=config.data, hint="raise max_length")
    k = replay_count(len(domain.examples), config.replay.fraction)
    general = Tokenized()
    if k or config.regularizers:
        rc = config.replay
        general = tokenize_records(replay_records(rc.source, model=loaded.model, tokenizer=tok, model_path=loaded.path,
                                                  num_prompts=rc.num_prompts, max_new_tokens=rc.max_new_tokens),
                                   tok, config.max_length)
    passes = stream_passes(config, len(domain.examples) + k)
    replay = sample(general.examples, k * passes, config.seed)  # fresh replay examples in every pass, while they last
    reference = sample(general.examples, min(config.replay.reference_examples, len(general.examples)),
                       config.seed + 1)
    counts = {"path": str(config.data), "format": records[0].format, "domain_examples": len(domain.examples),
              "replay_examples": k, "replay_source": config.replay.source,
              "replay_share": round(k / (k + len(domain.examples)), 4) if k else 0.0,
              "passes_built": passes, "replay_drawn": len(replay),
              "replay_pool": len(general.examples), "dropped": len(domain.dropped), "truncated": domain.truncated,
              "boilerplate": [{"kind": b.kind, "text": b.text, "share": round(b.share, 4),
                               "stripped": config.strip_boilerplate} for b in boilerplate]}
    notes = [f"data lint: {b.describe()}" + (" - stripped for this run" if config.strip_boilerplate else "")
             for b in boilerplate]
    if domain.dropped:
        notes.append(f"{len(domain.dropped)} examples had no response token within max_length={config.max_length} "
                     f"and were dropped (first: {domain.dropped[0]})")
    if domain.truncated:
        notes.append(f"{domain.truncated} examples were truncated to max_length={config.max_length}")
    if len(replay) > len(general.examples):
        notes.append(f"replay needs {len(replay)} examples ({k} in each of {passes} passes) but the source has "
                     f"{len(general.examples)}; some repeat")
    flagged = [{**example, "general": True} for example in replay]  # for penalties scoped to general examples
    stream = [e for p in range(passes) for e in mix(domain.examples, flagged[p * k:(p + 1) * k], config.seed + p)]
    if config.max_steps:  # read in order: rows of like length share a batch (the Trainer shuffles an epoch's own)
        stream = group_by_length(stream, config.batch_size, pass_size=len(domain.examples) + k)
    return TrainData(stream=stream, reference=reference, counts=counts, notes=notes, in_order=bool(config.max_steps))


def planned_steps(config: TrainConfig, stream_size: int) -> int:
    """The optimizer steps the Trainer will run: `max_steps`, else `epochs` over the stream."""
    if config.max_steps:
        return config.max_steps
    per_epoch = math.ceil(math.ceil(stream_size / config.batch_size) / config.gradient_accumulation_steps)
    return max(1, math.ceil(config.epochs * per_epoch))


def fit_time_budget(trainer: ForgetlessTrainer, config: TrainConfig, stream: list[dict[str, Any]],
                    checkpoint: str | None, run_dir: Path | None, notify: Notify, *, started: float,
                    monitor: Any = None) -> TrainConfig:
    """`config` with `max_steps` cut to what fits `max_seconds` (`forgetless.train.budget`), timed on the
    stream's first batches with the trainer's own loss, penalties included. The budget counts from
    `started` (`time.time()` when training began): loading, self-replay and this timing spend it too, and
    the forgetting `monitor`'s checks to come, each costing what its first (on the base model, now) took.

    The count is written to RUN/config.yaml, so `--set max_steps=N` repeats the run; the stream and
    its order do not depend on it beyond their length. A resumed run keeps its checkpoint's count.
    """
    from forgetless.train.budget import seconds_per_batch, steps_within

    planned = planned_steps(config, len(stream))
    if checkpoint is not None:
        steps = json.loads((Path(checkpoint) / "trainer_state.json").read_text())["max_steps"]
        return config.model_copy(update={"max_steps": steps})
    size, accumulation = config.batch_size, config.gradient_accumulation_steps
    device = trainer.args.device
    collate, model = trainer.data_collator, trainer.model
    batches = [{k: v.to(device) for k, v in collate(stream[i:i + size]).items()}
               for i in range(0, min(len(stream), (TIMED_BATCHES + 1) * size), size)]

    def step(batch: dict[str, Any]) -> None:
        with trainer.accelerator.autocast(), trainer.compute_loss_context_manager():
            loss = trainer.compute_loss(model, dict(batch))
        loss.backward()

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        per_step = seconds_per_batch(step, batches) * accumulation if len(batches) > 1 else 0.0
    check = (monitor.measure_base(model) if monitor is not None else None) or 0.0
    spent = time.time() - started
    if trainer.accelerator.num_processes > 1:  # every process must stop at the same step: the slowest decides
        gathered = trainer.accelerator.gather(torch.tensor([[per_step, spent, check]], device=device)).max(0).values
        per_step, spent, check = map(float, gathered)
    model.zero_grad(set_to_none=True)
    trainer.reset_penalty_logs()
    every = config.monitor.every if config.monitor else None  # checks every `every` steps, or MONITOR_CHECKS
    checks = 0.0 if every else MONITOR_CHECKS * check
    steps = steps_within(config.max_seconds - spent - checks, per_step + (check / every if every else 0.0), planned)
    notify(f"training time budget: {per_step:.2f} s per step here (timed), {spent:.0f} s spent before the first "
           f"step" + (f" and {check:.0f} s per monitor check" if check else "")
           + f", so {steps} of {planned} steps fit in {config.max_seconds:g} s (max_seconds)"
           + (" - set max_steps to choose" if steps < planned else ""))
    config = config.model_copy(update={"max_steps": steps})
    trainer.args.max_steps = steps
    if run_dir is not None:
        atomic_write_text(run_dir / "config.yaml", dump_config(config))
    return config


def stream_passes(config: TrainConfig, mix_size: int) -> int:
    """Passes over the mix that `max_steps` needs (1 without it: the Trainer repeats the data for `epochs`).

    Built into the stream, each pass is shuffled on its own and draws replay examples of its own from the
    source: a small data set trained for many passes rehearses many general examples, not the same few again.
    The rows of any step do not depend on how many passes were built (`group_by_length` regroups within a
    pass only), so a count cut by `max_seconds` repeats with `--set max_steps=N`.
    """
    if not config.max_steps or not mix_size:
        return 1
    return max(1, math.ceil(config.max_steps * config.batch_size * config.gradient_accumulation_steps / mix_size))


def apply_method(config: TrainConfig, model: Any) -> Any:
    """LoRA adapters (base frozen, verified) or full fine-tuning with the bottom blocks frozen."""
    model.train()
    if config.method == "lora":
        return apply_lora(model, config.lora, config.freeze)
    for p in model.parameters():
        p.requires_grad_(True)
    freeze_bottom(model, config.freeze)
    return model


def setup_regularizers(config: TrainConfig, model: Any, reference: list[dict[str, list[int]]],
                       collate: Callable, stream: list[dict[str, Any]] | None = None) -> list[tuple[str, Any]]:
    """Build each configured regularizer and let it prepare (anchors, Fisher) on the reference data, and
    attach what it reads per example (the KL's top-k targets) to the training stream."""
    if not config.regularizers:
        return []
    from forgetless.train.regularizers import REGULARIZERS

    device = next(model.parameters()).device
    batches = [{k: v.to(device) for k, v in collate(reference[i:i + config.batch_size]).items()}
               for i in range(0, len(reference), config.batch_size)]
    out = []
    for spec in config.regularizers:
        reg = REGULARIZERS.get(spec.name)(spec.arguments())
        reg.setup(model, reference_batches=batches or None)
        if hasattr(reg, "prepare_examples"):  # a registered factory need not subclass Regularizer
            reg.prepare_examples(model, stream or [], collate)
        out.append((f"penalty_{spec.name}", reg))
    return out


def training_arguments(config: TrainConfig, run_dir: Path, *, progress: bool) -> Any:
    """The Trainer's settings; bf16 autocast where the hardware computes bf16 natively."""
    from transformers import TrainingArguments

    device = pick_device(config.device)
    cuda = device.type == "cuda"
    bf16 = native_bf16(device) and config.dtype in ("auto", "bfloat16")
    return TrainingArguments(
        output_dir=str(run_dir / "checkpoints"), per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps, learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler, weight_decay=config.weight_decay, max_grad_norm=config.max_grad_norm,
        num_train_epochs=config.epochs, max_steps=config.max_steps or -1, logging_steps=config.logging_steps,
        logging_nan_inf_filter=False, save_strategy="steps", save_steps=config.save_steps,
        save_total_limit=config.save_total_limit, seed=config.seed, data_seed=config.seed,
        report_to=config.report_to, use_cpu=device.type == "cpu", bf16=bf16, fp16=cuda and config.dtype == "float16",
        remove_unused_columns=False, disable_tqdm=not progress, dataloader_num_workers=0,
        **_renamed_arguments(TrainingArguments, config),
    )


def _renamed_arguments(arguments_class: type, config: TrainConfig) -> dict[str, Any]:
    """Arguments whose names changed across transformers 5.x releases (warm-up ratio, checkpointing)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(arguments_class)}
    out: dict[str, Any] = {}
    if "warmup_ratio" in names:
        out["warmup_ratio"] = config.warmup_ratio
    else:
        out["warmup_steps"] = config.warmup_ratio  # newer releases: a float < 1 is a ratio
    if config.gradient_checkpointing:
        name = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
        out |= {name: True, f"{name}_kwargs": {"use_reentrant": False}}
    return out
