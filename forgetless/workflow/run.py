"""`forgetless run`: the main job. Baseline evaluation -> protected training -> evaluation after ->
paired comparison -> (with a budget) recovery sweep -> report, in one run folder.

The defaults learn and protect (docs/training.md, "What `forgetless run` trains"): a budget of passes over
the user's data (capped on a CPU), LoRA at a rate that learns, self-replay (the base model's own answers
to general prompts) with a KL term on those examples only, and the forgetting monitor. A user's YAML
config or `--set` overrides any of it.
"""

from __future__ import annotations

import copy
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from forgetless.compare import ForgettingReport
from forgetless.errors import ForgetlessError
from forgetless.eval import EvalResult, EvalSettings
from forgetless.history import records
from forgetless.io import check_output_path
from forgetless.merge import DEFAULT_ALPHAS, SweepResult, sweep
from forgetless.merge.saving import check_alpha
from forgetless.merge.sweep import SWEEP_FILE
from forgetless.models.device import pick_device
from forgetless.models.loading import LoadedModel
from forgetless.train.data import read_records
from forgetless.train.replay import replay_count
from forgetless.workflow.pipeline import Evaluation, evaluate_base, train_and_compare
from forgetless.workflow.suites import BUNDLED_DATA, BUNDLED_DOMAIN_SUITE, sweep_suites, workflow_suites

Progress = Callable[[str, int, int], None]

DEFAULT_TRAINING: dict[str, Any] = {
    "method": "lora",
    "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
    "learning_rate": 3e-3,
    "batch_size": 8,
    "max_length": 96,
    "warmup_ratio": 0.05,
    "replay": {"fraction": 0.25, "source": "self", "num_prompts": 160, "max_new_tokens": 64},
    # KL to the base on the replayed examples only, against its top-128 tokens computed once (2.7% below the exact
    # KL, measured): the domain answers stay free, and no second forward runs while training
    "regularizers": [{"name": "kl", "weight": 0.5, "examples": "general", "top_k": 128}],
    "monitor": {"mc_items": 40, "gen_items": 12},
    "save_steps": 20,
    "logging_steps": 5,
}
# The training budget when neither max_steps nor epochs is given (`training_steps`)
PASSES = 4  # over the user's examples (replay grows with them)
MIN_STEPS = 60  # a small file still gets enough updates to be learned
# On a CPU, the training stage's share of a run meant to end within 15 minutes on 2 cores without AMX: loading,
# self-replay (about 100 s in a fresh home), the timing and the monitor's checks count against it; the evaluations
# take about 200 s more, and the last 100 s cover a machine that slows down after the timing (15% seen)
CPU_TRAIN_SECONDS = 600


def training_steps(n_examples: int, replay_fraction: float, batch_size: int, accumulation: int = 1) -> tuple[int, str]:
    """Optimizer steps for PASSES passes over `n_examples` with their replay share, at least MIN_STEPS;
    with the sentence that explains it."""
    mix = n_examples + replay_count(n_examples, replay_fraction)
    per_pass = math.ceil(mix / (batch_size * accumulation))
    steps = max(PASSES * per_pass, MIN_STEPS)
    why = (f"{PASSES} passes over {n_examples} examples"
           + (f" and {mix - n_examples} replay examples" if mix > n_examples else "") + f" = {PASSES * per_pass} steps")
    if steps > PASSES * per_pass:
        why += f", raised to {MIN_STEPS} for a small data set"
    return steps, why


@dataclass
class RunOptions:
    model: str = "smollm2-135m"
    data: str = BUNDLED_DATA
    config: str | None = None  # a training YAML; its keys override DEFAULT_TRAINING
    out: str = "runs/forgetless-run"
    domain_suite: str | None = None  # held-out domain questions; the bundled set's by default
    per_type: int | None = 50  # items per type per suite (None: whole suites)
    threshold: float = 0.05
    overrides: list[str] = field(default_factory=list)  # dotted key=value, as `train --set`
    batch_size: int = 64
    budget: float | None = None  # recovery: keep the best alpha whose general drop stays within it (None: no sweep)
    alphas: tuple[float, ...] = DEFAULT_ALPHAS  # the recovery sweep's grid (0 and 1 reuse before/after)


@dataclass
class RunSummary:
    out: Path
    report: ForgettingReport
    paths: dict[str, str]
    seconds: dict[str, float]
    train: dict[str, Any]
    sweep: SweepResult | None = None  # the recovery sweep, when a budget was set


def training_config(options: RunOptions, run_dir: Path, n_examples: int,
                    notify: Callable[[str], None] = lambda message: None) -> Any:
    """DEFAULT_TRAINING, then the user's YAML, then --set overrides; validated like `forgetless train`.

    Validated in memory first: a bad config is reported against the user's file and writes nothing.
    """
    from forgetless.train.config import apply_override, read_yaml, validate_config

    merged = copy.deepcopy(DEFAULT_TRAINING)
    if options.config:
        path = Path(options.config)
        if not path.is_file():
            raise ForgetlessError("config file not found", where=path)
        merged.update(read_yaml(path))  # yaml.safe_load; bad YAML, bytes or shape -> one error naming the file
    merged.update(model=options.model, data=options.data, out=str(run_dir))
    raw = copy.deepcopy(merged)
    for override in options.overrides:
        apply_override(raw, override)
    if not (raw.get("replay") or {}).get("fraction"):  # no replay: the default KL term compares every example
        raw["regularizers"] = [{**r, "examples": "all"} if r in DEFAULT_TRAINING["regularizers"] else r
                               for r in raw.get("regularizers") or []]
    config = validate_config(raw, where=options.config or "--set")
    if "max_steps" not in raw and "epochs" not in raw:  # the default budget follows the data and the device
        steps, why = training_steps(n_examples, config.replay.fraction, config.batch_size,
                                    config.gradient_accumulation_steps)
        extra: dict[str, Any] = {"max_steps": steps}
        if pick_device(config.device).type == "cpu" and "max_seconds" not in raw:
            extra["max_seconds"] = CPU_TRAIN_SECONDS
            why += f", at most what fits a {CPU_TRAIN_SECONDS} s training stage on this CPU (timed before training)"
        config = validate_config({**raw, **extra}, where=options.config or "--set")
        merged.update(extra)
        notify(f"training budget: {why} (--set max_steps=N, epochs=N or max_seconds=S to choose)")
    resolved = run_dir.parent / "train-config.yaml"
    resolved.parent.mkdir(parents=True, exist_ok=True)
    resolved.write_text(yaml.safe_dump(merged, sort_keys=False))
    return config


def _history(summary: RunSummary, options: RunOptions, **_: Any) -> dict[str, Any]:
    from forgetless.report.model import StrategyRow

    headline = StrategyRow.from_comparison("run", summary.report).model_dump(  # the numbers a study row shows
        mode="json", exclude={"name", "description", "curve", "categories", "command", "config", "seconds"})
    return {"model": options.model, "config": asdict(options), "paths": {"out": summary.out, **summary.paths},
            "metrics": {**headline, "train": summary.train, "seconds": summary.seconds,
                        **({"sweep": summary.sweep.history_metrics()} if summary.sweep else {})}}


@records("run", _history)
def run(options: RunOptions, *, progress: Progress | None = None,
        notify: Callable[[str], None] | None = None) -> RunSummary:
    notify = notify or (lambda message: None)
    out = check_output_path(Path(options.out))
    if out.exists() and any(out.iterdir()):
        raise ForgetlessError("output folder is not empty", where=out, hint="choose another --out")
    domain = options.domain_suite or (BUNDLED_DOMAIN_SUITE if options.data == BUNDLED_DATA else None)
    suites = workflow_suites(domain, options.per_type)  # parsed before any compute: bad files fail fast
    records = read_records(options.data)  # the training data too: a malformed line fails now, not after an evaluation
    check_recovery(options)
    config = training_config(options, out / "train", len(records), notify)
    evaluation = Evaluation(suites=suites, settings=EvalSettings(batch_size=options.batch_size),
                            threshold=options.threshold, domain=suites[-1].name if domain else None)
    stages = 4 if options.budget is None else 5

    clock = time.perf_counter()
    notify(f"[1/{stages}] evaluating the base model {options.model}")
    base, before = evaluate_base(options.model, evaluation, out, progress)
    del base
    seconds: dict[str, float] = {"evaluate_before": time.perf_counter() - clock}

    notify(f"[2/{stages}] training ({config.method}, replay {config.replay.fraction:g}, "
           f"{len(config.regularizers)} regularizer(s), monitor {'on' if config.monitor else 'off'}); "
           f"[3/{stages}] evaluating and [4/{stages}] comparing follow")
    outcome = train_and_compare(config, before, evaluation, out, progress=progress, notify=notify,
                                train_progress=progress is not None)
    seconds.update(outcome.seconds)
    result, tuned, after, report = outcome.trained, outcome.tuned, outcome.after, outcome.report

    swept = None
    if options.budget is not None:
        clock = time.perf_counter()
        notify(f"[5/5] recovery: sweeping alphas {', '.join(f'{a:g}' for a in options.alphas)} "
               f"(budget {options.budget:g}) and writing the report")
        swept = recover(options, tuned, evaluation, {0.0: before, 1.0: after}, out, progress)
        seconds["recovery_sweep"] = time.perf_counter() - clock
        notify(f"recovery: {swept.reason}")
    del tuned
    paths = write_run_report(out, report, options, result, seconds, swept)
    return RunSummary(out=out, report=report, paths=paths, seconds=seconds,
                      train={"steps": result.steps, "final_loss": result.final_loss, "run_dir": str(result.run_dir),
                             "monitor": result.monitor}, sweep=swept)


def check_recovery(options: RunOptions) -> None:
    """A bad budget or alpha fails before any compute, not after training."""
    if options.budget is None:
        return
    if not (options.budget >= 0 and math.isfinite(options.budget)):
        raise ForgetlessError(f"budget must be a non-negative accuracy drop, got {options.budget}",
                              hint="e.g. --budget 0.02")
    if not options.alphas:
        raise ForgetlessError("no alphas to sweep", hint="e.g. --alphas 0,0.25,0.5,0.75,1")
    for alpha in options.alphas:
        check_alpha(float(alpha))


def recover(options: RunOptions, tuned: LoadedModel, evaluation: Evaluation, known: dict[float, EvalResult],
            out: Path, progress: Progress | None) -> SweepResult:
    """The last stage: sweep theta(alpha) of the trained model and keep the best alpha inside the budget.

    LoRA scales the adapter, full fine-tuning interpolates the weights, in place. alpha 0 and 1 are
    the base and the tuned model, already evaluated (`known`): reused, not evaluated again.
    Writes OUT/sweep.json and, only when an alpha fits, the chosen model to OUT/recovered/.
    """
    general, domain = sweep_suites(evaluation.suites, evaluation.domain)
    result = sweep(options.model, tuned, alphas=options.alphas, budget=options.budget or 0.0,
                   general_suites=general, domain_suite=domain,
                   settings=evaluation.settings, out=out / "recovered", progress=progress, known=known)
    result.save(out / SWEEP_FILE)
    if result.chosen is None:  # sweep left only its sweep.json there: no model, so no folder
        shutil.rmtree(out / "recovered")
    return result


def write_run_report(out: Path, report: ForgettingReport, options: RunOptions, result: Any,
                     seconds: dict[str, float], swept: SweepResult | None = None) -> dict[str, str]:
    from forgetless.report import ReportData, Sweep, write_report

    command = f"forgetless run --model {options.model} --data {options.data} --out {options.out}"
    if options.config:
        command += f" --config {options.config}"
    sweep = None
    if swept is not None:
        command += f" --budget {options.budget:g} --alphas {','.join(f'{a:g}' for a in options.alphas)}"
        how = "LoRA adapter scaled by alpha" if swept.kind == "lora" else "weights interpolated towards the base"
        sweep = Sweep.from_sweep(swept, f"the fine-tuned model, {how}")
    config_text = (out / "train" / "config.yaml").read_text() if (out / "train" / "config.yaml").exists() else ""
    data = ReportData.from_comparison(
        report, title="Fine-tuning without forgetting",
        reproduce={"commands": [command], "configs": {"train/config.yaml": config_text}},
        curve=(result.monitor or {}).get("points") or [],
        timings={k: round(v, 1) for k, v in seconds.items()}, sweep=sweep)
    return {k: str(v) for k, v in write_report(out, data).items()}
