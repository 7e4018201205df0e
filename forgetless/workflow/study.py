"""`forgetless demo`: the strategy study. Same base, same data, same step budget, six ways to fine-tune;
what each one learned and what each one forgot, measured the same way, in one report. Each strategy is
a training config on top of `forgetless run`'s defaults, put through `forgetless run`'s own pipeline
(`forgetless.workflow.pipeline`): a one-strategy study and a run with that config agree.

    from forgetless.workflow.study import StudyOptions, run_study
    result = run_study(StudyOptions(out="study", quick=True))
    result.recommended, result.paths["html"]

Steps: evaluate the base ONCE (before.json) -> for each strategy: train into out/<key>/train,
evaluate and compare with the base (out/<key>/after.json, compare.json) -> optional recovery: interpolate the aggressive
full fine-tune back towards the base (`forgetless.merge.sweep`) and pick the alpha inside the budget
-> study.json and report.html/md/json.

The recommended strategy is the one with the largest domain gain among those whose verdict is
`no_forgetting` (no significant knowledge or behaviour drop beyond the threshold); when none is, the
largest domain gain among the `inconclusive` ones; when every strategy forgets, none is recommended.
"""

from __future__ import annotations

import copy
import gc
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from forgetless.compare import ForgettingReport, compare
from forgetless.errors import ForgetlessError
from forgetless.eval import EvalResult, EvalSettings
from forgetless.history import records
from forgetless.io import atomic_write_json, check_output_path
from forgetless.workflow.pipeline import Evaluation, evaluate_base, train_and_compare
from forgetless.workflow.run import DEFAULT_TRAINING
from forgetless.workflow.suites import (
    BUNDLED_DATA,
    BUNDLED_DOMAIN_SUITE,
    sweep_suites,
    workflow_suites,
)

Progress = Callable[[str, int, int], None]
Notify = Callable[[str], None]

STUDY_FILE = "study.json"
RUN_EVAL = EvalSettings()  # what `forgetless run` evaluates with


@dataclass(frozen=True)
class Strategy:
    key: str  # folder name
    name: str  # shown in the report
    description: str
    config: dict[str, Any]  # training keys on top of the shared budget


# no LoRA dropout (PEFT's default): 30 steps see each example at most once, so it has nothing to regularize,
# and on a CPU it cost a third of a LoRA step (a masked copy of every adapted layer's input)
LORA = {"method": "lora", "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}}
# every strategy starts from `forgetless run`'s defaults; those that leave its protections out say so
UNPROTECTED = {"replay": {"fraction": 0.0}, "regularizers": []}

STRATEGIES: tuple[Strategy, ...] = (
    Strategy("aggressive-full", "aggressive full",
             "full fine-tuning, lr 3e-4 constant, no warm-up, no protection (the `aggressive` preset)",
             {"method": "full", "preset": "aggressive", "learning_rate": 3e-4, **UNPROTECTED}),
    Strategy("safe-full", "safe full",
             "full fine-tuning, lr 2e-5 with warm-up and cosine decay (the `safe`/`balanced` range)",
             {"method": "full", "preset": "safe", "learning_rate": 2e-5, **UNPROTECTED}),
    Strategy("full-ewc", "full + EWC",
             "full fine-tuning at the aggressive lr 3e-4, plus EWC (weight 100, mean-normalised Fisher on "
             "32 general examples): isolates what EWC alone protects",
             {"method": "full", "preset": "aggressive", "learning_rate": 3e-4,
              "regularizers": [{"name": "ewc", "weight": 100.0, "fisher_max_examples": 32}],
              "replay": {"fraction": 0.0, "reference_examples": 32}}),
    Strategy("lora", "LoRA", "LoRA r 16 on all linear layers, lr 3e-4, base frozen",
             {**LORA, "learning_rate": 3e-4, **UNPROTECTED}),
    Strategy("lora-replay", "LoRA + replay", "LoRA as above, with 25% bundled general examples in the mix",
             {**LORA, "learning_rate": 3e-4, "replay": {"fraction": 0.25, "source": "bundled"}, "regularizers": []}),
    Strategy("run-defaults", "forgetless run defaults",
             "what `forgetless run` trains: LoRA r 16 at lr 3e-3, 25% self-replay (the base's own answers) with "
             "a KL term (0.5) on those examples only", {}),
    Strategy("lora-kl", "LoRA + KL", "LoRA as above at lr 3e-4, plus a KL(base || tuned) penalty (beta 0.5) on "
             "every training token", {**LORA, "learning_rate": 3e-4, "replay": {"fraction": 0.0},
                                      "regularizers": [{"name": "kl", "weight": 0.5}]}),
)
STRATEGY_KEYS = tuple(s.key for s in STRATEGIES)
DEFAULT_STRATEGIES = tuple(k for k in STRATEGY_KEYS if k != "lora-kl")  # lora-kl: on request
RECOVERY_NAME = "aggressive full + recovery"


@dataclass
class StudyOptions:
    model: str = "smollm2-135m"
    out: str = "runs/forgetless-study"
    quick: bool = False  # tiny budget for smoke tests: 4 steps, 12 items per type, shorter replies
    steps: int | None = None  # optimizer steps per strategy (default 30; quick 4)
    per_type: int | None = None  # items per type per suite (default 50, as `forgetless run`; quick 12; 0 = all)
    batch_size: int = 8  # training examples per step
    max_length: int = 96
    seed: int = 0
    threshold: float = 0.05  # verdicts: a general drop at least this large is forgetting
    # recovery: the largest general drop the chosen alpha may have, on the upper end of its 95% CI. With 55 items
    # per type that interval is about +-10 pp wide, so a smaller budget cannot be certified (use --items 0).
    budget: float = 0.10
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES  # keys of STRATEGIES, in order
    recover: bool = True  # interpolation recovery of the aggressive full fine-tune (needs forgetless.merge)
    alphas: tuple[float, ...] | None = None  # recovery grid (default 0.25, 0.5; quick 0.5)
    eval_batch_size: int = 64
    max_new_tokens: int | None = None  # open answers (default: as `forgetless run`; quick 24)
    check_max_new_tokens: int | None = None  # checklist replies (default: as `forgetless run`; quick 64)
    samples: int = 4  # general questions shown with base vs aggressive replies

    def resolved(self) -> StudyOptions:
        steps = self.steps or (4 if self.quick else 30)
        per_type = (12 if self.quick else 50) if self.per_type is None else (self.per_type or None)
        alphas = self.alphas or ((0.5,) if self.quick else (0.25, 0.5))
        unknown = [k for k in self.strategies if k not in STRATEGY_KEYS]
        if unknown:
            raise ForgetlessError(f"unknown strategy {unknown}", hint=f"choose from {', '.join(STRATEGY_KEYS)}")
        return StudyOptions(**{**asdict(self), "steps": steps, "per_type": per_type, "alphas": tuple(alphas),
                               "strategies": tuple(self.strategies),
                               "max_new_tokens": self.max_new_tokens or (24 if self.quick else RUN_EVAL.max_new_tokens),
                               "check_max_new_tokens": self.check_max_new_tokens
                               or (64 if self.quick else RUN_EVAL.check_max_new_tokens)})


@dataclass
class StudyResult:
    out: Path
    rows: list[Any]  # forgetless.report.StrategyRow, one per strategy (+ the recovery row)
    recommended: str | None
    reason: str
    paths: dict[str, str]
    seconds: dict[str, float]
    sweep: dict[str, Any] | None = None
    recovery_note: str = ""
    data: Any = None  # the ReportData
    reports: dict[str, ForgettingReport] = field(default_factory=dict, repr=False)

    def row(self, name: str) -> Any:
        return next(r for r in self.rows if r.name == name)


def strategy_config(strategy: Strategy, options: StudyOptions) -> dict[str, Any]:
    """`forgetless run`'s defaults, the shared budget (steps, batch, length, data, seed, monitor), then the
    strategy's own keys (each section whole)."""
    steps = options.steps or 1
    monitor = {"every": max(1, steps // 2), "mc_items": 8 if options.quick else 20,
               "gen_items": 2 if options.quick else 8}
    budget: dict[str, Any] = {
        "model": options.model, "data": BUNDLED_DATA, "max_steps": steps, "batch_size": options.batch_size,
        "max_length": options.max_length, "warmup_ratio": 0.05, "seed": options.seed, "monitor": monitor,
        "save_steps": steps * 10, "save_total_limit": 1, "logging_steps": max(1, steps // 10),
    }
    return copy.deepcopy({**DEFAULT_TRAINING, **budget, **strategy.config})


def _write_config(strategy: Strategy, options: StudyOptions, folder: Path) -> tuple[Any, str, Path]:
    from forgetless.train import load_config

    raw = strategy_config(strategy, options)
    raw["out"] = str(folder / "train")
    text = yaml.safe_dump(raw, sort_keys=False)
    path = folder / "train-config.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return load_config(path), text, path


def _free() -> None:
    gc.collect()


def _stage(prefix: str, progress: Progress | None) -> Progress | None:
    if progress is None:
        return None
    return lambda stage, done, total: progress(f"{prefix} | {stage}", done, total)


def choose_recommended(rows: list[Any]) -> tuple[str | None, str]:
    """Largest domain gain among no_forgetting rows, else among inconclusive ones; None if all forget.

    Rows without a verdict (or only `forgetting` ones) are never recommended."""
    def gain(r: Any) -> float:
        return r.domain_gain.value if r.domain_gain and r.domain_gain.value is not None else float("-inf")

    for verdict, why in (("no_forgetting", "no significant forgetting"),
                         ("inconclusive", "no strategy was clearly free of forgetting; inconclusive")):
        pool = [r for r in rows if r.verdict == verdict]
        if pool:
            best = max(pool, key=gain)
            g = gain(best)
            gtxt = f"{g * 100:+.1f} pts" if g != float("-inf") else "unknown"
            return best.name, (f"{best.name}: the largest domain gain ({gtxt}) among the {len(pool)} "
                               f"strateg{'y' if len(pool) == 1 else 'ies'} with verdict '{verdict}' ({why})")
    return None, "every strategy showed significant forgetting: none is recommended"


def _samples(before: EvalResult, after: EvalResult | None, n: int, label: str) -> list[Any]:
    """General questions with the base's and the aggressive model's open replies; lost answers first."""
    from forgetless.compare.metrics import outcome
    from forgetless.report import Sample
    from forgetless.report.model import question_text

    if after is None or n <= 0:
        return []
    after_by = {it.key: it for it in after.items}
    pairs = []
    for it in before.items:
        other = after_by.get(it.key)
        if it.suite != "general" or other is None or it.reply is None or other.reply is None:
            continue
        b, a = outcome(it, "behaviour"), outcome(other, "behaviour")
        note = "lost" if b and not a else "gained" if a and not b else "still right" if a else "still wrong"
        rank = {"lost": 0, "still right": 1, "gained": 2, "still wrong": 3}[note]
        expected = it.choices[it.answer] if it.choices and it.answer is not None else None
        pairs.append((rank, Sample(question=question_text(it.prompt), before=it.reply, after=other.reply,
                                   expected=expected, label=f"{label} · {it.key}", note=note)))
    pairs.sort(key=lambda p: p[0])
    return [s for _, s in pairs[:n]]


def _recover(options: StudyOptions, base: Any, tuned_dir: Path, suites: list[Any], before: EvalResult,
             after: EvalResult, settings: EvalSettings, domain: str | None, progress: Progress | None,
             notify: Notify) -> tuple[Any, dict[str, Any] | None, Any, str]:
    """Interpolation recovery of the aggressive full fine-tune. Returns (report Sweep, sweep dict, row, note).

    alpha 0 and 1 are the base and the aggressive model: their evaluations are reused, not repeated.
    The alphas are tested from the smallest up; the first outside the budget ends the sequence."""
    try:
        from forgetless.merge import sweep
        from forgetless.merge.sweep import reuse
    except Exception as e:  # noqa: BLE001 - the merge module is optional for the study
        return None, None, None, f"recovery skipped: forgetless.merge.sweep is not importable ({e})"
    from forgetless.report import StrategyRow, Sweep

    general, dom = sweep_suites(suites, domain)
    try:
        result = sweep(base, str(tuned_dir), alphas=options.alphas or (0.5,), budget=options.budget,
                       general_suites=general, domain_suite=dom, settings=settings, seed=options.seed,
                       progress=_stage("recovery", progress), known={0.0: before, 1.0: after})
    except ForgetlessError as e:
        return None, None, None, f"recovery failed: {e}"
    report_sweep = Sweep.from_sweep(result, "aggressive full fine-tune interpolated towards the base")
    row = None
    if result.chosen is not None and result.chosen in result.evals:
        after = result.evals[result.chosen]
        after.save(tuned_dir.parent / f"recovery-alpha-{result.chosen:g}.json")
        rep = compare(reuse(before, [*general, *([dom] if dom else [])]), after, threshold=options.threshold,
                      training_data=BUNDLED_DATA, domain_suites=[domain] if domain else None)
        row = StrategyRow.from_comparison(
            RECOVERY_NAME, rep,
            description=f"the aggressive full fine-tune interpolated to alpha {result.chosen:g} "
                        f"(theta = (1-alpha) base + alpha tuned), chosen inside the {options.budget:g} budget",
            command=f"forgetless merge --base {options.model} --tuned {tuned_dir} --alpha {result.chosen:g} "
                    f"--out {tuned_dir.parent / 'merged'}")
    note = result.reason
    notify(f"recovery: {note}")
    data = result.to_dict()
    del result
    _free()
    return report_sweep, data, row, note


ROW_DETAILS = {"name", "description", "curve", "categories", "command", "config"}  # kept out of the run history


def _history(result: StudyResult, options: StudyOptions, **_: Any) -> dict[str, Any]:
    return {"model": options.model, "config": asdict(options), "paths": {"out": result.out, **result.paths},
            "metrics": {"recommended": result.recommended, "seconds": result.seconds,
                        "strategies": {r.name: r.model_dump(mode="json", exclude=ROW_DETAILS) for r in result.rows}}}


@records("demo", _history)
def run_study(options: StudyOptions, progress: Progress | None = None,
              notify: Notify | None = None) -> StudyResult:
    """Run every strategy on the same budget against one base evaluation; write study.json and the report."""
    from forgetless.report import StrategyRow

    notify = notify or (lambda message: None)
    options = options.resolved()
    out = check_output_path(Path(options.out))
    if out.exists() and any(out.iterdir()):
        raise ForgetlessError("output folder is not empty", where=out, hint="choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    suites = workflow_suites(BUNDLED_DOMAIN_SUITE, options.per_type)
    settings = EvalSettings(batch_size=options.eval_batch_size, seed=options.seed,
                            max_new_tokens=options.max_new_tokens, check_max_new_tokens=options.check_max_new_tokens)
    strategies = [s for s in STRATEGIES if s.key in options.strategies]
    total = len(strategies) + 2
    seconds: dict[str, float] = {}
    started = time.perf_counter()

    clock = time.perf_counter()
    notify(f"[1/{total}] evaluating the base model {options.model} (once, for every strategy)")
    evaluation = Evaluation(suites=suites, settings=settings, threshold=options.threshold,
                            domain=BUNDLED_DOMAIN_SUITE)
    base, before = evaluate_base(options.model, evaluation, out, _stage("base", progress))
    seconds["evaluate base"] = time.perf_counter() - clock

    rows: list[Any] = []
    reports: dict[str, ForgettingReport] = {}
    aggressive_after: EvalResult | None = None
    aggressive_dir: Path | None = None
    configs: dict[str, str] = {}
    monitor_baseline = None
    for i, strategy in enumerate(strategies, start=2):
        folder = out / strategy.key
        config, text, config_path = _write_config(strategy, options, folder)
        configs[f"{strategy.key}/train-config.yaml"] = text
        notify(f"[{i}/{total}] {strategy.name}: training {options.steps} steps ({strategy.description})")
        outcome = train_and_compare(config, before, evaluation, folder, progress=_stage(strategy.name, progress),
                                    notify=notify, monitor_baseline=monitor_baseline)
        monitor_baseline = outcome.trained.monitor_baseline  # every strategy starts from the same base, probes alike
        report, train_s, eval_s = outcome.report, outcome.seconds["train"], outcome.seconds["evaluate_after"]
        reports[strategy.name] = report
        seconds[f"{strategy.name}: train"] = train_s
        seconds[f"{strategy.name}: evaluate"] = eval_s
        rows.append(StrategyRow.from_comparison(
            strategy.name, report, description=strategy.description,
            curve=(outcome.trained.monitor or {}).get("points") or [],
            command=f"forgetless train {config_path} --out {folder / 'train'}", config=text,
            seconds=round(train_s + eval_s, 1)))
        if strategy.key == "aggressive-full":
            aggressive_after, aggressive_dir = outcome.after, outcome.trained.run_dir
        del outcome
        _free()
        notify(f"    {strategy.name}: verdict {report.verdict} ({train_s:.0f}s train, {eval_s:.0f}s eval)")

    report_sweep, sweep_data, recovery_note = None, None, ""
    if not options.recover:
        recovery_note = "recovery not run (--no-recover)"
    elif aggressive_dir is None or aggressive_after is None:
        recovery_note = "recovery needs the aggressive full strategy"
    else:
        clock = time.perf_counter()
        notify(f"[{total}/{total}] recovery: interpolating the aggressive full fine-tune towards the base "
               f"(alphas {', '.join(f'{a:g}' for a in options.alphas or ())})")
        report_sweep, sweep_data, recovery_row, recovery_note = _recover(
            options, base, aggressive_dir, suites, before, aggressive_after, settings, BUNDLED_DOMAIN_SUITE,
            progress, notify)
        if recovery_row is not None:
            recovery_row.seconds = round(time.perf_counter() - clock, 1)
            rows.append(recovery_row)
        seconds["recovery sweep"] = time.perf_counter() - clock
    del base
    _free()

    recommended, reason = choose_recommended(rows)
    seconds["total"] = time.perf_counter() - started
    samples = _samples(before, aggressive_after, options.samples, "aggressive full")
    data = build_report(options, rows, recommended, reason, report_sweep, samples, configs, seconds,
                        recovery_note)
    from forgetless.report import write_report

    paths = {k: str(v) for k, v in write_report(out, data).items()}
    result = StudyResult(out=out, rows=rows, recommended=recommended, reason=reason, paths=paths,
                         seconds={k: round(v, 1) for k, v in seconds.items()}, sweep=sweep_data,
                         recovery_note=recovery_note, data=data, reports=reports)
    atomic_write_json(out / STUDY_FILE, study_json(result, options))
    result.paths["study"] = str(out / STUDY_FILE)
    return result


def reproduce_command(options: StudyOptions) -> str:
    parts = ["forgetless demo", f"--out {options.out}"]
    if options.model != "smollm2-135m":
        parts.append(f"--model {options.model}")
    if options.quick:
        parts.append("--quick")
    parts += [f"--steps {options.steps}", f"--items {options.per_type or 0}", f"--seed {options.seed}"]
    return " ".join(parts)


def build_report(options: StudyOptions, rows: list[Any], recommended: str | None, reason: str, sweep: Any,
                 samples: list[Any], configs: dict[str, str], seconds: dict[str, float], recovery_note: str) -> Any:
    from forgetless.report import ReportData, Reproduce

    chosen = next((r for r in rows if r.name == recommended), None)
    headline = None
    if chosen is not None:
        bits = [f"recommended: {chosen.name}"]
        if chosen.domain_gain and chosen.domain_gain.value is not None:
            bits.append(f"domain {chosen.domain_gain.value * 100:+.1f} pts")
        for label, est in (("knowledge", chosen.knowledge_drop), ("behaviour", chosen.behaviour_drop)):
            if est and est.value is not None:
                bits.append(f"{label} drop {est.value * 100:+.1f} pts")
        headline = ", ".join(bits)
    elif rows:
        headline = reason
    notes = [
        (f"Every strategy: the same base ({options.model}), the same data ({BUNDLED_DATA}), {options.steps} "
         f"optimizer steps x batch {options.batch_size} x {options.max_length} tokens, seed {options.seed}."),
        (f"Each fine-tuned model is compared with ONE evaluation of the base ({options.per_type or 'all'} items "
         f"per type per suite); drops are base minus tuned, paired per item, with 95% CIs and adjusted p-values."),
        (f"How the recommendation is chosen: {reason}. Rule: the largest domain gain among strategies whose "
         f"verdict is 'no_forgetting' (every general drop's CI upper end below {options.threshold:g}), else "
         f"among 'inconclusive' ones."),
    ]
    if recovery_note:
        notes.append(f"Recovery: {recovery_note}")
    if options.quick:
        notes.append("QUICK mode: a smoke test. With this few steps and items the numbers are noise; "
                     "run without --quick for the study.")
    return ReportData(
        title="Strategy study: fine-tuning without forgetting",
        subtitle=f"{options.model} on the bundled Zentrix FAQ, {len(rows)} strategies, equal step budget",
        model=options.model, date=date.today().isoformat(),
        machine=f"{platform.machine()}, {platform.system()}, {_device()}", headline=headline,
        budget=options.threshold, strategies=rows, recommended=recommended, sweep=sweep, samples=samples,
        reproduce=Reproduce(commands=[reproduce_command(options)] + [r.command for r in rows if r.command],
                            configs=configs),
        timings={k: round(v, 1) for k, v in seconds.items()}, notes=notes)


def _device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
        return f"CPU, {torch.get_num_threads()} threads"
    except Exception:  # noqa: BLE001
        return "unknown device"


def study_json(result: StudyResult, options: StudyOptions) -> dict[str, Any]:
    return {
        "format_version": 1,
        "options": {**asdict(options), "strategies": list(options.strategies), "alphas": list(options.alphas or ())},
        "strategies": [r.model_dump(mode="json") for r in result.rows],
        "recommended": result.recommended,
        "reason": result.reason,
        "recovery": {"note": result.recovery_note, "sweep": result.sweep},
        "seconds": result.seconds,
        "reports": {k: v for k, v in result.paths.items()},
    }
