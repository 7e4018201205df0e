"""`sweep`: evaluate theta(alpha) for several alphas and pick the best one inside a forgetting budget.

For each alpha (alpha = 0 is the base model and is evaluated once):

    general drop   paired, per item, against alpha = 0 on the general suites, on
                   knowledge (mc log-likelihood `correct`) and
                   behaviour (mc `open_correct` + gen/check `correct`);
                   general_drop_high = the larger of the two upper ends of the paired CI
    domain gain    paired mean accuracy difference against alpha = 0 on the domain suite
                   (mc `correct` + gen/check `correct`), with its CI

Selection rule (`choose_alpha`): among alphas > 0 with general_drop_high <= budget, the largest
domain gain; None when no alpha > 0 fits. Judging the upper CI end means a small suite that
cannot rule out a large drop does not pass. With `first_fit` the alphas are tried from the largest
down and the first inside the budget is taken, unevaluated smaller ones included: the domain gain
grows with alpha, so this is the grid's choice at fewer evaluations (the gain's noise aside).

The tuned model is loaded once; its weights are set in place for each alpha and restored after.
Results already at hand (`known`, e.g. `forgetless run`'s before/after evaluations for alpha 0 and
1) are used instead of evaluating those alphas again.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np

from forgetless.errors import ForgetlessError
from forgetless.eval import EvalResult, EvalSettings, evaluate
from forgetless.eval.evaluate import Progress
from forgetless.eval.results import ItemResult
from forgetless.io import atomic_write_json
from forgetless.merge.saving import Pair, check_alpha, load_pair, prepare_out, require_base, save_merged
from forgetless.models.loading import LoadedModel
from forgetless.stats import summarize_drop
from forgetless.suites import Suite, load_suite

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
GeneralMetric = Literal["both", "knowledge", "behaviour"]
SWEEP_FILE = "sweep.json"


@dataclass
class SweepRow:
    """One alpha's outcome. Drops are base minus theta(alpha) (positive = forgetting); gain is the reverse."""

    alpha: float
    domain_acc: float | None = None
    domain_gain: float | None = None
    domain_gain_ci: tuple[float, float] | None = None
    knowledge_acc: float | None = None
    knowledge_drop: float | None = None
    knowledge_ci: tuple[float, float] | None = None
    behaviour_acc: float | None = None
    behaviour_drop: float | None = None
    behaviour_ci: tuple[float, float] | None = None
    general_drop_high: float | None = None  # the budget is judged on this: worst upper CI end
    within_budget: bool = False
    eval_seconds: float = 0.0  # set weights + evaluate
    set_seconds: float = 0.0  # set weights alone
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # DropStats.to_dict() per measure


@dataclass
class SweepResult:
    """What `forgetless sweep` writes to sweep.json; `evals` (per-item results per alpha) stays in memory."""

    rows: list[SweepRow]
    chosen: float | None
    reason: str
    budget: float
    general_metric: str
    confidence: float
    seed: int
    kind: str  # full | lora
    base: str | None
    tuned: str
    trained: int  # trained parameters (full) or LoRA modules
    general_suites: list[str]
    domain_suite: str | None
    settings: dict[str, Any]
    suites: list[dict[str, Any]]
    versions: dict[str, str | None]
    load_seconds: float
    total_seconds: float
    first_fit: bool = False  # alphas below the chosen one were not evaluated
    saved: str | None = None
    evals: dict[float, EvalResult] = field(default_factory=dict, repr=False)

    def row(self, alpha: float) -> SweepRow:
        return next(r for r in self.rows if r.alpha == alpha)

    def to_dict(self) -> dict[str, Any]:
        """Everything but `evals`, JSON-safe (non-finite floats become None)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "evals"}
        return _finite({**data, "rows": [asdict(r) for r in self.rows]})

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())


def _finite(obj: Any) -> Any:
    """JSON has no NaN/inf: they become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def choose_alpha(rows: Sequence[SweepRow], budget: float) -> float | None:
    """The alpha > 0 with the largest domain gain among those with general_drop_high <= budget.

    Ties go to the smaller general_drop_high, then the smaller alpha. Without a domain suite
    (all gains None) the largest alpha that fits is chosen. None when no alpha > 0 fits.
    """
    fits = [r for r in rows if r.alpha > 0 and r.general_drop_high is not None and r.general_drop_high <= budget]
    if not fits:
        return None
    if all(r.domain_gain is None for r in fits):
        return max(r.alpha for r in fits)
    best = max(fits, key=lambda r: (-math.inf if r.domain_gain is None else r.domain_gain, -r.general_drop_high,
                                    -r.alpha))
    return best.alpha


def knowledge_outcomes(items: Sequence[ItemResult]) -> dict[str, bool]:
    """mc log-likelihood correctness, keyed suite/id."""
    return {it.key: bool(it.correct) for it in items if it.type == "mc"}


def behaviour_outcomes(items: Sequence[ItemResult]) -> dict[str, bool]:
    """What the model says: mc open-ended twins (when asked) plus gen and check items."""
    out = {f"{it.key}#open": bool(it.open_correct) for it in items if it.type == "mc" and it.open_correct is not None}
    out.update({it.key: bool(it.correct) for it in items if it.type in ("gen", "check")})
    return out


def domain_outcomes(items: Sequence[ItemResult]) -> dict[str, bool]:
    """mc correct plus gen/check correct."""
    return {it.key: bool(it.correct) for it in items if it.type in ("mc", "gen", "check")}


def paired(base: dict[str, bool], other: dict[str, bool]) -> tuple[np.ndarray, np.ndarray]:
    """Two aligned 0/1 arrays in the base's key order."""
    keys = list(base)
    return np.array([base[k] for k in keys], dtype=float), np.array([other[k] for k in keys], dtype=float)


def _in_suites(result: EvalResult, names: set[str]) -> list[ItemResult]:
    return [it for it in result.items if it.suite in names]


def compare_to_base(alpha: float, base: EvalResult, result: EvalResult, *, general: set[str], domain: str | None,
                    budget: float, metric: GeneralMetric, rng: np.random.Generator, confidence: float) -> SweepRow:
    """One row: paired general drops (knowledge, behaviour) and domain gain of `result` against `base`."""
    row = SweepRow(alpha=alpha)
    measures: dict[str, Callable[[Sequence[ItemResult]], dict[str, bool]]] = {
        "knowledge": knowledge_outcomes, "behaviour": behaviour_outcomes}
    highs = []
    for name, outcomes in measures.items():
        before = outcomes(_in_suites(base, general))
        if not before:
            continue
        s = summarize_drop(*paired(before, outcomes(_in_suites(result, general))), rng=rng, confidence=confidence)
        setattr(row, f"{name}_acc", s.acc_after)
        setattr(row, f"{name}_drop", s.drop)
        setattr(row, f"{name}_ci", (s.ci_low, s.ci_high))
        row.stats[name] = s.to_dict()
        if metric in ("both", name):
            highs.append(s.ci_high)
    if highs:
        row.general_drop_high = max(highs)
        row.within_budget = row.general_drop_high <= budget
    if domain is not None:
        before = domain_outcomes(_in_suites(base, {domain}))
        s = summarize_drop(*paired(before, domain_outcomes(_in_suites(result, {domain}))), rng=rng,
                           confidence=confidence)
        row.domain_acc, row.domain_gain, row.domain_gain_ci = s.acc_after, 0.0 - s.drop, (0.0 - s.ci_high, 0.0 - s.ci_low)
        row.stats["domain"] = s.to_dict()
    return row


def _alphas(alphas: Sequence[float]) -> list[float]:
    """Sorted, deduplicated, each in [0, 1], always with 0 (the base: every row is paired against it)."""
    return sorted({0.0, *(check_alpha(float(a)) for a in alphas)})


def resolve_suites(general_suites: Sequence[str | Suite], domain_suite: str | Suite | None) -> tuple[list[Suite], Suite | None]:
    general = [s if isinstance(s, Suite) else load_suite(s) for s in general_suites]
    domain = domain_suite if isinstance(domain_suite, Suite) or domain_suite is None else load_suite(domain_suite)
    names = [s.name for s in general] + ([domain.name] if domain else [])
    if len(set(names)) != len(names):
        raise ForgetlessError(f"suite names must differ, got {names}", hint="the domain suite cannot also be a general suite")
    if not any(it.type in ("mc", "gen", "check") for s in general for it in s):
        raise ForgetlessError("the general suites have no mc, gen or check items to measure a drop on",
                              hint="use --suite general")
    if domain is not None and not any(it.type in ("mc", "gen", "check") for it in domain):
        raise ForgetlessError(f"domain suite '{domain.name}' has no mc, gen or check items")
    return general, domain


def _reason(chosen: float | None, rows: list[SweepRow], budget: float, first_fit: bool = False) -> str:
    if chosen is None:
        return (f"no alpha > 0 keeps the general drop's upper CI end within the budget of {budget:g}; "
                "keep the base model, or retrain with a stronger regularizer")
    row = next(r for r in rows if r.alpha == chosen)
    gain = "" if row.domain_gain is None or first_fit else f" and the largest domain gain ({row.domain_gain:+.3f})"
    how = " (the largest alpha inside it, tried from the top down)" if first_fit else ""
    note = "" if row.domain_gain is None or row.domain_gain > 0 else "; note that it does not improve the domain"
    return (f"alpha {chosen:g} has general drop <= {row.general_drop_high:.3f} (upper CI end) <= {budget:g}"
            f"{how}{gain}{note}")


def _stage(alpha: float, progress: Progress | None) -> Progress | None:
    if progress is None:
        return None
    return lambda stage, done, total: progress(f"alpha {alpha:g} | {stage}", done, total)


def reuse(result: EvalResult, suites: list[Suite]) -> EvalResult:
    """A copy of an evaluation already made, narrowed to `suites`; refused unless it scored exactly those items."""
    scored = {s.name: s.sha256 for s in result.suites}
    differ = [s.name for s in suites if scored.get(s.name) != s.sha256]
    if differ:
        raise ForgetlessError(f"a known result did not score suite(s) {differ} as the sweep does",
                              hint="pass results evaluated on the sweep's own suites")
    names = set(scored) & {s.name for s in suites}
    return result.model_copy(update={"model": dict(result.model),
                                     "suites": [s for s in result.suites if s.name in names],
                                     "items": [it for it in result.items if it.suite in names]})


def evaluate_alphas(pair: Pair, alphas: list[float], suites: list[Suite], settings: EvalSettings,
                    progress: Progress | None, known: Mapping[float, EvalResult] | None = None,
                    stop: Callable[[float, EvalResult], bool] | None = None,
                    ) -> tuple[dict[float, EvalResult], dict[float, tuple[float, float]]]:
    """theta(alpha) for each alpha in order, set in place and evaluated, until `stop(alpha, result)` says
    so; the model is left at alpha = 1 (the tuned model).

    An alpha in `known` takes that result (same settings assumed) instead of an evaluation, with 0
    seconds: theta(0) is the base and theta(1) the tuned model, so their own evaluations are these
    alphas' results (item for item; for LoRA up to float rounding, ~1e-6 in log-likelihood).
    Returns the results and, per alpha, (seconds to set the weights, seconds to set + evaluate).
    """
    evals, seconds = {}, {}
    try:
        for alpha in alphas:
            start = time.perf_counter()
            if known and alpha in known:
                evals[alpha] = reuse(known[alpha], suites)
                seconds[alpha] = (0.0, 0.0)
            else:
                pair.interpolator.set_alpha(alpha)
                set_done = time.perf_counter()
                evals[alpha] = evaluate(pair.loaded, suites, settings=settings, progress=_stage(alpha, progress))
                seconds[alpha] = (round(set_done - start, 3), round(time.perf_counter() - start, 3))
            evals[alpha].model.update(alpha=alpha, interpolation=pair.kind, base_model=pair.base)
            if stop is not None and stop(alpha, evals[alpha]):
                break
    finally:
        pair.interpolator.set_alpha(1.0)
    return evals, seconds


def sweep(base: str | LoadedModel | None, tuned: str | LoadedModel, *, alphas: Sequence[float] = DEFAULT_ALPHAS,
          budget: float = 0.02, general_suites: Sequence[str | Suite] = ("general",),
          domain_suite: str | Suite | None = "domain", general_metric: GeneralMetric = "both",
          settings: EvalSettings | None = None, confidence: float = 0.95, seed: int = 0,
          out: str | Path | None = None, overwrite: bool = False, device: str | None = None,
          dtype: str | None = None, progress: Progress | None = None,
          known: Mapping[float, EvalResult] | None = None, first_fit: bool = False) -> SweepResult:
    """Evaluate theta(alpha) = (1 - alpha) theta_0 + alpha theta_ft per alpha; choose by `choose_alpha`.

    `tuned` may be a run folder, a model folder or a model in memory (changed in place during the
    sweep and restored to alpha = 1 after). With `out`, the chosen model is saved there (as by
    `merge`) together with sweep.json. `known`: results already computed with these settings for
    some alphas (typically {0: base evaluation, 1: tuned evaluation}), used instead of evaluating.
    `first_fit`: try the alphas from the largest down, stop at the first inside the budget.
    """
    if not (budget >= 0 and math.isfinite(budget)):
        raise ForgetlessError(f"budget must be a non-negative accuracy drop, got {budget}", hint="e.g. 0.02")
    if general_metric not in ("both", "knowledge", "behaviour"):
        raise ForgetlessError(f"unknown general metric '{general_metric}'", hint="use both, knowledge or behaviour")
    grid = _alphas(alphas)
    general, domain = resolve_suites(general_suites, domain_suite)
    if out is not None:
        prepare_out(out, overwrite)
    started = time.perf_counter()
    pair = load_pair(base, tuned, device=device, dtype=dtype)
    if out is not None:
        require_base(pair)
    load_seconds = time.perf_counter() - started
    judged: dict[float, SweepRow] = {}
    reference: EvalResult | None = None  # alpha 0, always evaluated first: every row is paired against it

    def judge(alpha: float, result: EvalResult) -> bool:
        """One row, its bootstrap seeded by (seed, alpha): a row does not depend on the other alphas swept."""
        nonlocal reference
        if reference is None:
            reference = result
        rng = np.random.default_rng([seed, round(alpha * 1_000_000)])
        judged[alpha] = compare_to_base(alpha, reference, result, general={s.name for s in general},
                                        domain=domain.name if domain else None, budget=budget,
                                        metric=general_metric, rng=rng, confidence=confidence)
        return first_fit and alpha > 0 and judged[alpha].within_budget

    order = [0.0, *sorted(grid[1:], reverse=True)] if first_fit else grid
    evals, seconds = evaluate_alphas(pair, order, [*general, *([domain] if domain else [])], settings or EvalSettings(),
                                     progress, known, stop=judge)
    rows = [judged[a] for a in grid if a in judged]
    for row in rows:
        row.set_seconds, row.eval_seconds = seconds[row.alpha]
    chosen = choose_alpha(rows, budget)
    first = evals[0.0]
    result = SweepResult(
        rows=rows, chosen=chosen, reason=_reason(chosen, rows, budget, first_fit), budget=budget,
        general_metric=general_metric, confidence=confidence, seed=seed, kind=pair.kind, base=pair.base, tuned=pair.tuned,
        trained=len(pair.interpolator.names), general_suites=[s.name for s in general],
        domain_suite=domain.name if domain else None, settings=first.settings,
        suites=[s.model_dump() for s in first.suites], versions=first.versions, load_seconds=round(load_seconds, 3),
        total_seconds=0.0, first_fit=first_fit, evals=evals)
    result.total_seconds = round(time.perf_counter() - started, 3)
    if out is not None:
        write_out(result, pair, Path(out), overwrite)
    return result


def write_out(result: SweepResult, pair: Pair, out: Path, overwrite: bool) -> None:
    """OUT/sweep.json, plus the chosen model (as `merge` writes it) when an alpha was chosen."""
    if result.chosen is not None:
        save_merged(pair, result.chosen, out, overwrite=overwrite, extra={"sweep": SWEEP_FILE})
        result.saved = str(out)
    elif out.is_dir() and any(out.iterdir()):  # an earlier sweep's model: prepare_out allowed replacing it
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    result.save(out / SWEEP_FILE)
