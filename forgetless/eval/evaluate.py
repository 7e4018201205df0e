"""`evaluate`: score a model in memory on probe suites, item by item.

It takes a model already loaded, so the training monitor and the recovery sweep reuse it without
touching disk. Each multiple-choice item gets a knowledge outcome (log-likelihood) and, by default,
a behaviour outcome (the same question asked openly): fine-tuning can break the second while the
first holds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal, Sequence

import torch

from forgetless.eval.drift import score_texts
from forgetless.eval.generate import cut_at_stops, greedy_generate
from forgetless.eval.loglik import answer_and_score, score_multiple_choice
from forgetless.eval.prompts import answer_context, render_prompt, template_fingerprint
from forgetless.eval.results import CheckOutcome, EvalResult, ItemResult, SuiteRecord
from forgetless.eval.summary import summarize
from forgetless.history import records
from forgetless.models.loading import LoadedModel
from forgetless.suites import Suite, load_suite
from forgetless.versions import library_versions

DEFAULT_SUITES = ("general", "checklist", "general-text")
LM_EVAL_PREFIX = "lm-eval:"  # suites run by lm-evaluation-harness (forgetless.integrations.lm_eval)
Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class EvalSettings:
    """Everything besides the model and suites that a score depends on (recorded in the result)."""

    batch_size: int = 64  # a decode step costs one read of the weights plus a little per row: batch widely
    open_ended: bool = True  # also ask every mc question without its choices
    max_new_tokens: int = 32  # gen items and open-ended twins
    check_max_new_tokens: int = 160  # checklist replies (JSON, lists) need room
    max_text_tokens: int = 512
    seed: int = 0
    stop: list[str] = field(default_factory=list)
    lm_eval_limit: int | None = None  # lm-eval tasks: the first N documents of each (GSM8K has 1319); None = all
    lm_eval_chat_template: bool = False  # lm-eval tasks: each prompt in the chat template (apply_chat_template)


def _score_mc(model: Any, tok: Any, suite: Suite, s: EvalSettings, progress: Progress | None) -> list[ItemResult]:
    items = suite.by_type("mc")
    if not items:
        return []
    contexts = [render_prompt(tok, it.question) for it in items]
    done = [0]

    def tick(stage: str, total: int) -> Callable[[int], None]:
        def on_batch(n: int) -> None:
            done[0] += n
            if progress:
                progress(stage, done[0], total)
        return on_batch

    # an item with an answer prefix comes here only for its open reply (asked without the prefix)
    bare = [i for i, it in enumerate(items) if s.open_ended or not it.answer_prefix]
    scores: list[Any] = [None] * len(items)
    replies: list[str | None] = [None] * len(items)
    if bare:
        new_tokens = s.max_new_tokens if s.open_ended else 0
        got, answered = answer_and_score(model, tok, [contexts[i] for i in bare], [items[i].choices for i in bare],
                                         batch_size=s.batch_size, max_new_tokens=new_tokens,
                                         on_batch=tick(f"{suite.name}: multiple choice", len(bare)))
        for k, i in enumerate(bare):
            scores[i] = got[k]
            replies[i] = None if answered is None else cut_at_stops(answered[k], s.stop)
    led = [i for i, it in enumerate(items) if it.answer_prefix]
    if led:  # their choices are scored after the answer's opening words
        for i in led:
            contexts[i] = answer_context(tok, items[i].question, items[i].answer_prefix)
        rescored = score_multiple_choice(model, tok, [contexts[i] for i in led], [items[i].choices for i in led],
                                         batch_size=s.batch_size, after_words=True)
        for i, score in zip(led, rescored):
            scores[i] = score
    return [
        ItemResult(suite=suite.name, id=it.id, type="mc", category=it.category, prompt=ctx,
                   choices=list(it.choices), answer=it.answer, logliks=sc.logliks, pred=sc.pred,
                   correct=sc.pred == it.answer, correct_norm=sc.pred_norm == it.answer, reply=reply,
                   open_correct=None if reply is None else it.is_correct_open(reply))
        for it, ctx, sc, reply in zip(items, contexts, scores, replies)
    ]


def _score_generation(model: Any, tok: Any, suite: Suite, s: EvalSettings, progress: Progress | None) -> list[ItemResult]:
    results = []
    for kind, limit in (("gen", s.max_new_tokens), ("check", s.check_max_new_tokens)):
        items = suite.by_type(kind)
        if not items:
            continue
        prompts = [render_prompt(tok, it.prompt) for it in items]
        done = [0]

        def on_batch(n: int, total: int = len(items), stage: str = f"{suite.name}: {kind}") -> None:
            done[0] += n
            if progress:
                progress(stage, done[0], total)

        replies = greedy_generate(model, tok, prompts, max_new_tokens=limit, batch_size=s.batch_size, stop=s.stop,
                                  on_batch=on_batch)
        for it, prompt, reply in zip(items, prompts, replies):
            if kind == "gen":
                results.append(ItemResult(suite=suite.name, id=it.id, type="gen", category=it.category, prompt=prompt,
                                          reply=reply, correct=it.is_correct(reply)))
            else:
                outcomes = [CheckOutcome(kind=c.kind, passed=c.passes(reply), describe=c.describe()) for c in it.checks]
                results.append(ItemResult(suite=suite.name, id=it.id, type="check", category=it.category,
                                          prompt=prompt, reply=reply, checks=outcomes, severity=it.severity,
                                          correct=all(o.passed for o in outcomes)))
    return results


def _score_text(model: Any, tok: Any, suite: Suite, s: EvalSettings, reference: Any,
                progress: Progress | None) -> list[ItemResult]:
    items = suite.by_type("text")
    if not items:
        return []
    done = [0]

    def on_batch(n: int) -> None:
        done[0] += n
        if progress:
            progress(f"{suite.name}: text", done[0], len(items))

    scores = score_texts(model, tok, [it.text for it in items], reference=None if reference == "base" else reference,
                         reference_is_base=reference == "base", batch_size=max(1, min(8, s.batch_size // 2)),
                         max_length=s.max_text_tokens, on_batch=on_batch)
    return [ItemResult(suite=suite.name, id=it.id, type="text", category=it.category, prompt=it.text,
                       tokens=sc.tokens, nll=sc.nll, kl=sc.kl) for it, sc in zip(items, scores)]


def run_reference(model: LoadedModel, reference: str | LoadedModel | None = None,
                  **load_options: Any) -> LoadedModel | Literal["base"] | None:
    """The model KL is measured against. Given: "base" (an adapter's own base weights), a model or a model
    spec. Not given, for a forgetless run folder: its base (the adapter switched off, or the base model the
    run recorded for a full fine-tune); otherwise none. `load_options` go to `load_model`."""
    from forgetless.models import load_model

    if isinstance(reference, LoadedModel) or reference == "base":
        return reference
    if reference is not None:
        return load_model(reference, **load_options)
    if model.adapter:
        return "base"
    base = model.info.get("base_model") if model.source == "run" else None
    return load_model(base, **{k: v for k, v in load_options.items() if k in ("device", "dtype")}) if base else None


def _suite_label(suite: Any) -> Any:
    if isinstance(suite, Suite):
        return str(suite.path) if suite.path else suite.name
    return suite if isinstance(suite, str) else sorted(getattr(suite, "suites", {}))  # LmEvalTasks: its suites


def _history(result: EvalResult, model: LoadedModel, suites: Sequence[Any] = DEFAULT_SUITES, *,
             reference: Any = None, **_: Any) -> dict[str, Any]:
    """The run history's view of an evaluation: each suite's overall numbers (per category: in the result)."""
    ref = reference.spec if isinstance(reference, LoadedModel) else reference
    return {"model": model.spec, "metrics": {name: data["overall"] for name, data in result.summary.items()},
            "config": {"suites": [_suite_label(s) for s in suites], "adapter": model.adapter, "reference": ref,
                       **result.settings}}


@records("eval", _history)
def evaluate(model: LoadedModel, suites: Sequence[Any] = DEFAULT_SUITES, *,
             reference: LoadedModel | Literal["base"] | None = None, settings: EvalSettings | None = None,
             progress: Progress | None = None) -> EvalResult:
    """Score `model` on each suite: a bundled name, a JSONL path, a `Suite`, or `lm-eval:TASK[,TASK...]`
    (lm-evaluation-harness tasks, scored by the bridge in `forgetless.integrations.lm_eval`; or the
    `LmEvalTasks` its `load_tasks` returned, as the CLI passes them). Tasks are checked before anything is
    scored. `reference="base"` measures KL against the adapter's own base weights."""
    s = settings or EvalSettings()
    torch.manual_seed(s.seed)
    lm_specs = [x for x in suites if isinstance(x, str) and x.startswith(LM_EVAL_PREFIX)]
    lm_tasks = next((x for x in suites if not isinstance(x, (str, Suite))), None)  # LmEvalTasks loaded by the caller
    if lm_specs or lm_tasks is not None:
        from forgetless.integrations import lm_eval as bridge

        if lm_specs:
            lm_tasks = bridge.load_tasks(bridge.parse_specs(lm_specs))  # a typo fails before any compute
    loaded_suites = [x if isinstance(x, Suite) else load_suite(x) for x in suites
                     if isinstance(x, Suite) or (isinstance(x, str) and x not in lm_specs)]
    ref_model = reference.model if isinstance(reference, LoadedModel) else reference
    net, tok = model.model, model.tokenizer
    was_training = net.training
    net.eval()
    items: list[ItemResult] = []
    timings: dict[str, float] = {}
    try:
        for suite in loaded_suites:
            start = time.perf_counter()
            by_key = {}
            for part in (_score_mc(net, tok, suite, s, progress), _score_generation(net, tok, suite, s, progress),
                         _score_text(net, tok, suite, s, ref_model, progress)):
                by_key.update({r.id: r for r in part})
            items.extend(by_key[it.id] for it in suite.items)  # the suite's own order
            timings[suite.name] = round(time.perf_counter() - start, 3)
    finally:
        net.train(was_training)
    settings_record = {**asdict(s), "template": template_fingerprint(tok),
                       "dtype": str(next(net.parameters()).dtype).removeprefix("torch."),
                       "device": str(next(net.parameters()).device)}
    result = EvalResult(
        model=model.describe(),
        reference=({"spec": "base (adapter disabled)"} if reference == "base"
                   else reference.describe() if isinstance(reference, LoadedModel) else None),
        suites=[SuiteRecord(name=x.name, path=str(x.path) if x.path else None, sha256=x.sha256, counts=x.counts())
                for x in loaded_suites],
        settings=settings_record, versions=library_versions(), summary=summarize(items), timings=timings,
        training=model.training, items=items)
    if lm_tasks is None:
        return result
    return bridge.combine(result, bridge.evaluate_lm_eval(model, lm_tasks, batch_size=s.batch_size,
                                                          limit=s.lm_eval_limit,
                                                          apply_chat_template=s.lm_eval_chat_template))
