"""`sweep`: evaluate theta(alpha) for several alphas and pick the best one inside a forgetting budget.

Every row is a view of `compare(alpha 0, alpha)` (`forgetless.compare`): the same outcomes, drops,
intervals and verdicts the report gives for that pair, so the sweep never certifies on numbers the
report would not show.

    general drop   per measure (knowledge, behaviour, checklist, as `compare` defines them) on the
                   general suites; general_drop_high = the largest upper CI end of the measures judged
    domain gain    the domain suite's headline measure (`ForgettingReport.domain_metric`): open
                   answers where asked, else multiple choice, with its CI

Selection rule (`choose_alpha`), a fixed-sequence test: the alphas are tested from the smallest up,
and the first one whose general_drop_high exceeds the budget stops the sequence; among the alphas
before it, the one with the largest domain gain. Testing in a fixed order keeps the chance that any
certified alpha truly exceeds the budget at the level of one test (2.5% for a 95% interval),
however many alphas are tried; stopping at the first pass from the top would add a chance of error
for every alpha tried. Alphas after the first failure are not evaluated.

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

from forgetless.compare import compare
from forgetless.errors import ForgetlessError
from forgetless.eval import EvalResult, EvalSettings, evaluate
from forgetless.eval.evaluate import Progress
from forgetless.history import records
from forgetless.io import atomic_write_json
from forgetless.merge.saving import Pair, check_alpha, load_pair, prepare_out, require_base, save_merged
from forgetless.models.loading import LoadedModel
from forgetless.suites import Suite, load_suite

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
MEASURES = ("knowledge", "behaviour", "checklist")  # the general measures a budget can be judged on
GeneralMetric = Literal["all", "knowledge", "behaviour", "checklist"]
SWEEP_FILE = "sweep.json"
HISTORY_METRICS = ("rows", "chosen", "reason", "load_seconds", "total_seconds")  # the rest of sweep.json: settings


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
    checklist_acc: float | None = None
    checklist_drop: float | None = None
    checklist_ci: tuple[float, float] | None = None
    verdict: str | None = None  # compare's overall verdict for (alpha 0, alpha), at threshold = budget
    general_drop_high: float | None = None  # the budget is judged on this: worst upper CI end
    within_budget: bool = False
    eval_seconds: float = 0.0  # set weights + evaluate
    set_seconds: float = 0.0  # set weights alone
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # compare's Comparison per measure


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

    def history_metrics(self) -> dict[str, Any]:
        """The run history's view: one entry per alpha (named, so two grids line up), without raw stats."""
        data = self.to_dict()
        rows = {f"alpha {row['alpha']:g}": {k: v for k, v in row.items() if k not in ("alpha", "stats")}
                for row in data["rows"]}
        return {"chosen": data["chosen"], "reason": data["reason"], "alphas": rows,
                "load_seconds": data["load_seconds"], "total_seconds": data["total_seconds"]}

    def history_config(self) -> dict[str, Any]:
        """Everything in sweep.json that is not a result: the sweep's settings."""
        return {k: v for k, v in self.to_dict().items() if k not in HISTORY_METRICS}


def _finite(obj: Any) -> Any:
    """JSON has no NaN/inf: they become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def certified(rows: Sequence[SweepRow], budget: float) -> list[SweepRow]:
    """The fixed sequence: rows with alpha > 0 from the smallest alpha up, until the first whose
    general_drop_high is missing or above the budget (that one and all after it are not certified)."""
    out = []
    for r in sorted((r for r in rows if r.alpha > 0), key=lambda r: r.alpha):
        if r.general_drop_high is None or r.general_drop_high > budget:
            break
        out.append(r)
    return out


def choose_alpha(rows: Sequence[SweepRow], budget: float) -> float | None:
    """Among the certified alphas (`certified`), the one with the largest domain gain.

    Ties go to the smaller general_drop_high, then the smaller alpha. Without a domain suite
    (all gains None) the largest certified alpha is chosen. None when no alpha > 0 is certified.
    """
    fits = certified(rows, budget)
    if not fits:
        return None
    if all(r.domain_gain is None for r in fits):
        return max(r.alpha for r in fits)
    best = max(fits, key=lambda r: (-math.inf if r.domain_gain is None else r.domain_gain, -r.general_drop_high,
                                    -r.alpha))
    return best.alpha


def compare_to_base(alpha: float, base: EvalResult, result: EvalResult, *, domain: str | None, budget: float,
                    metric: GeneralMetric, confidence: float, seed: int) -> SweepRow:
    """One row, read off `compare(base, result)` at threshold = budget: its general drops with their
    intervals, its verdict and the domain gain it reports."""
    report = compare(base, result, threshold=budget, confidence=confidence, seed=seed,
                     domain_suites=[domain] if domain else [])
    row = SweepRow(alpha=alpha, verdict=report.verdict)
    highs = []
    for name in MEASURES:
        m = report.metric(name)
        if m is None:
            continue
        o = m.overall
        setattr(row, f"{name}_acc", o.after)
        setattr(row, f"{name}_drop", o.drop)
        setattr(row, f"{name}_ci", (o.ci_low, o.ci_high))
        row.stats[name] = o.model_dump()
        if metric in ("all", name):
            highs.append(o.ci_high)
    if highs:
        row.general_drop_high = max(highs)
        row.within_budget = row.general_drop_high <= budget
    gain = report.domain_metric()
    if gain is not None:
        o = gain.overall
        row.domain_acc, row.domain_gain, row.domain_gain_ci = o.after, 0.0 - o.drop, (0.0 - o.ci_high, 0.0 - o.ci_low)
        row.stats["domain"] = o.model_dump()
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


def _reason(chosen: float | None, rows: list[SweepRow], budget: float) -> str:
    stopped = next((r for r in sorted(rows, key=lambda r: r.alpha) if r.alpha > 0 and not r.within_budget), None)
    order = (f"; alphas tested from the smallest up, stopped at {stopped.alpha:g} (upper CI end "
             f"{stopped.general_drop_high if stopped.general_drop_high is not None else float('nan'):.3f})"
             if stopped is not None else "")
    if chosen is None:
        return (f"no alpha > 0 keeps the general drop's upper CI end within the budget of {budget:g}{order}; "
                "keep the base model, or retrain with a stronger regularizer")
    row = next(r for r in rows if r.alpha == chosen)
    gain = "" if row.domain_gain is None else f" and the largest domain gain ({row.domain_gain:+.3f})"
    note = "" if row.domain_gain is None or row.domain_gain > 0 else "; note that it does not improve the domain"
    return (f"alpha {chosen:g} has general drop <= {row.general_drop_high:.3f} (upper CI end) <= {budget:g}"
            f"{gain}{note}{order}")


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


def _history(result: SweepResult, base: Any, tuned: str | LoadedModel, *, out: str | Path | None = None,
             **_: Any) -> dict[str, Any]:
    return {"model": tuned.spec if isinstance(tuned, LoadedModel) else tuned, "config": result.history_config(),
            "metrics": result.history_metrics(),
            "paths": {"out": out, "sweep": Path(out) / SWEEP_FILE if out is not None else None}}


@records("sweep", _history)
def sweep(base: str | LoadedModel | None, tuned: str | LoadedModel, *, alphas: Sequence[float] = DEFAULT_ALPHAS,
          budget: float = 0.02, general_suites: Sequence[str | Suite] = ("general",),
          domain_suite: str | Suite | None = "domain", general_metric: GeneralMetric = "all",
          settings: EvalSettings | None = None, confidence: float = 0.95, seed: int = 0,
          out: str | Path | None = None, overwrite: bool = False, device: str | None = None,
          dtype: str | None = None, progress: Progress | None = None,
          known: Mapping[float, EvalResult] | None = None) -> SweepResult:
    """Evaluate theta(alpha) = (1 - alpha) theta_0 + alpha theta_ft per alpha; choose by `choose_alpha`.

    `tuned` may be a run folder, a model folder or a model in memory (changed in place during the
    sweep and restored to alpha = 1 after). With `out`, the chosen model is saved there (as by
    `merge`) together with sweep.json. `known`: results already computed with these settings for
    some alphas (typically {0: base evaluation, 1: tuned evaluation}), used instead of evaluating.
    The alphas are evaluated from the smallest up and the first outside the budget ends the sweep.
    """
    if not (budget >= 0 and math.isfinite(budget)):
        raise ForgetlessError(f"budget must be a non-negative accuracy drop, got {budget}", hint="e.g. 0.02")
    if general_metric not in ("all", *MEASURES):
        raise ForgetlessError(f"unknown general metric '{general_metric}'", hint="use all, " + ", ".join(MEASURES))
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
        """One row against alpha 0 (always evaluated first); True ends the sequence."""
        nonlocal reference
        if reference is None:
            reference = result
        judged[alpha] = compare_to_base(alpha, reference, result, domain=domain.name if domain else None,
                                        budget=budget, metric=general_metric, confidence=confidence, seed=seed)
        return alpha > 0 and not judged[alpha].within_budget

    evals, seconds = evaluate_alphas(pair, grid, [*general, *([domain] if domain else [])], settings or EvalSettings(),
                                     progress, known, stop=judge)
    rows = [judged[a] for a in grid if a in judged]
    for row in rows:
        row.set_seconds, row.eval_seconds = seconds[row.alpha]
    chosen = choose_alpha(rows, budget)
    first = evals[0.0]
    result = SweepResult(
        rows=rows, chosen=chosen, reason=_reason(chosen, rows, budget), budget=budget,
        general_metric=general_metric, confidence=confidence, seed=seed, kind=pair.kind, base=pair.base, tuned=pair.tuned,
        trained=len(pair.interpolator.names), general_suites=[s.name for s in general],
        domain_suite=domain.name if domain else None, settings=first.settings,
        suites=[s.model_dump() for s in first.suites], versions=first.versions, load_seconds=round(load_seconds, 3),
        total_seconds=0.0, evals=evals)
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
