"""Bridge to lm-evaluation-harness: suites out as lm-eval tasks, lm-eval tasks in as per-item results.

Two kinds of task come in. A `multiple_choice` task (MMLU, ARC) gives mc items: knowledge. A
`generate_until` task (GSM8K, IFEval) gives gen items: behaviour, each item correct when the task's
own first metric after its first filter says so (GSM8K: exact_match after strict-match; IFEval:
prompt-level strict accuracy), with every other metric, filter and instruction kept as the item's
checks. Greedy generation runs on forgetless's batched decoder wherever it sees what lm-eval's
own `generate_until` loop would see (greedy, no other setting, the same context tokens, nothing
truncated), with lm-eval's decoding and stop-string cut; every other request goes to lm-eval's
loop. `settings.lm_eval.generated_by` counts the requests each one answered.

Export writes a suite's mc items with each context already rendered by the model's chat template
and each choice as forgetless scores it, so lm-eval asks exactly what forgetless asks; its gen items
become a generate_until task that lm-eval scores with forgetless's own answer matching. Running goes
through lm-eval's own `simple_evaluate` with per-sample logging; every sample becomes an
`ItemResult`, so `compare` pairs MMLU or ARC items before and after like any probe suite.

One difference is bridged. lm-eval moves a context's trailing whitespace into the continuation; a
chat template's generation prompt ends in a newline, so plain lm-eval scores "\\nParis" after
"...assistant" where forgetless scores "Paris" after "...assistant\\n". The predictions agree (the
shift is one constant per question), the log-likelihoods are lower by log p(newline). For tasks
that forgetless exported, the bridge's model keeps the boundary where the task put it; every other
task is tokenized exactly as lm-eval tokenizes it.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml

from forgetless.errors import ForgetlessError
from forgetless.eval.evaluate import LM_EVAL_PREFIX
from forgetless.eval.loglik import make_score
from forgetless.eval.prompts import answer_context, continuation_text, encode, render_prompt, template_fingerprint
from forgetless.eval.results import CheckOutcome, EvalResult, ItemResult, SuiteRecord
from forgetless.eval.summary import summarize
from forgetless.io import atomic_write_text, write_jsonl
from forgetless.models.loading import LoadedModel
from forgetless.suites import ITEM_TYPES, Suite
from forgetless.suites.ifeval import ifeval_offline
from forgetless.versions import library_versions

PREFIX = LM_EVAL_PREFIX  # `forgetless eval --suite lm-eval:TASK[,TASK...]`
INSTALL = "lm-eval is not installed: pip install 'forgetless[lm-eval]'"
EXPORT_FORMAT = 1  # the `metadata.version` of exported tasks
MATCH_MODULE = "forgetless_match"  # beside an exported gen task: its `!function` scorer
MATCH_CODE = '''"""Written by `forgetless export-lm-eval`: forgetless's own answer matching, so lm-eval scores
the exported gen items as `forgetless eval` does (its replies are stripped the same way)."""

from forgetless.suites.matching import matches


def process_results(doc, results):
    return {"acc": float(matches(results[0].strip(), doc["answers"], doc["match"]))}
'''
PER_ITEM = ("multiple_choice", "generate_until")  # the lm-eval output types that become items
LEFT_OUT = {"mc": "exported as its own multiple_choice task",
            "gen": "exported as its own generate_until task",
            "check": "declarative checks have no lm-eval equivalent",
            "text": "perplexity and KL are scored by `forgetless eval`"}


def _require_lm_eval() -> Any:
    try:
        import lm_eval
    except ImportError:
        raise ForgetlessError(INSTALL) from None
    logger = logging.getLogger("lm_eval")
    if logger.level == logging.NOTSET:  # its per-run warnings would drown ours; a level set by the user stays
        logger.setLevel(logging.ERROR)
    return lm_eval


# ---------------------------------------------------------------- export

@dataclass(frozen=True)
class ExportedTask:
    """What `export_suite` wrote, and the items it left out (type -> count)."""

    task: str
    yaml_path: Path
    data_path: Path
    n_items: int
    left_out: dict[str, int]


def default_task_name(suite_name: str) -> str:
    """`general` -> `forgetless_general`: the prefix keeps clear of lm-eval's own task names."""
    return "forgetless_" + "".join(c if c.isalnum() else "_" for c in suite_name).strip("_")


def _task_config(task: str, data_path: Path, suite: Suite, tokenizer: Any, left_out: dict[str, int],
                 output_type: str, fields: dict[str, Any], metrics: Sequence[str], **meta: Any) -> dict[str, Any]:
    """The lm-eval YAML of an exported task: fields are read from each row by name, so no Jinja touches the text."""
    return {
        "task": task,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_path)}},
        "test_split": "test",
        "output_type": output_type,
        **fields,
        "num_fewshot": 0,
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in metrics],
        "metadata": {"version": EXPORT_FORMAT,
                     "forgetless": {"suite": suite.name, "suite_sha256": suite.sha256, **meta,
                                    "template": template_fingerprint(tokenizer), "left_out": left_out}},
    }


def export_suite(suite: Suite, tokenizer: Any, out_dir: str | Path, *, task: str | None = None,
                 kind: Literal["mc", "gen"] = "mc", max_new_tokens: int = 32) -> ExportedTask:
    """Write `suite`'s items of one kind as an lm-eval task: `<task>.yaml` and `<task>.jsonl`.

    mc items become a multiple_choice task (default name `forgetless_SUITE`); gen items a generate_until
    task (`forgetless_SUITE_gen`) scored by forgetless's own answer matching, which `forgetless_match.py`,
    written beside it, imports. Contexts are rendered with `tokenizer`'s chat template, so the task fits
    the models that share it; the template's fingerprint is recorded and the bridge refuses a model with
    another.
    """
    task = task or default_task_name(suite.name) + ("_gen" if kind == "gen" else "")
    if not task or not all(c.isalnum() or c in "_-." for c in task) or not task[0].isalnum():
        raise ForgetlessError(f"task name {task!r} is not usable by lm-eval",
                              hint="use letters, digits, '_', '-' and '.', starting with a letter or digit")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ForgetlessError("expected a folder for the lm-eval task, found a file", where=out)
    items = suite.by_type(kind)
    left_out = {t: n for t, n in suite.counts()["types"].items() if t != kind and n}
    if not items:
        raise ForgetlessError(f"suite {suite.name} has no {kind} items to export as an lm-eval task",
                              where=suite.path, hint="; ".join(LEFT_OUT[t] for t in left_out if t in LEFT_OUT) or None)
    data_path = (out / f"{task}.jsonl").resolve()  # lm-eval resolves data files from its working folder
    yaml_path = out / f"{task}.yaml"
    if kind == "mc":
        delimiter = continuation_text(tokenizer, "")  # "" after a chat template, " " after a plain prompt
        # after an item's answer prefix every choice is spaced (`answer_context`): the task's delimiter, then the rest
        rows = [{"id": it.id, "category": it.category, "question": it.question,
                 "context": answer_context(tokenizer, it.question, it.answer_prefix), "choices": list(it.choices),
                 "targets": [continuation_text(tokenizer, c, bool(it.answer_prefix))[len(delimiter):]
                             for c in it.choices], "answer": it.answer}
                for it in items]
        fields = {"doc_to_text": "context", "doc_to_choice": "targets", "doc_to_target": "answer",
                  "target_delimiter": delimiter}
        config = _task_config(task, data_path, suite, tokenizer, left_out, "multiple_choice", fields,
                              ("acc", "acc_norm", "acc_bytes"))
        tail = ""
    else:
        rows = [{"id": it.id, "category": it.category, "prompt": it.prompt,
                 "context": render_prompt(tokenizer, it.prompt), "answers": list(it.answers), "match": it.match,
                 "target": it.answers[0]} for it in items]
        fields = {"doc_to_text": "context", "doc_to_target": "target",  # greedy, as forgetless generates
                  "generation_kwargs": {"until": [], "do_sample": False, "max_gen_toks": max_new_tokens}}
        config = _task_config(task, data_path, suite, tokenizer, left_out, "generate_until", fields, ("acc",),
                              max_new_tokens=max_new_tokens)
        tail = f"process_results: !function {MATCH_MODULE}.process_results\n"  # a tag safe_dump cannot write
    header = (f"# Written by `forgetless export-lm-eval` from suite '{suite.name}'. Run it with\n"
              f"#   lm-eval run --model hf --model_args pretrained=MODEL --tasks {task} --include_path {out}\n"
              f"# or: forgetless eval MODEL --suite lm-eval:{yaml_path}\n")
    write_jsonl(data_path, rows)
    if kind == "gen":
        atomic_write_text(out / f"{MATCH_MODULE}.py", MATCH_CODE)
    atomic_write_text(yaml_path, header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True) + tail)
    return ExportedTask(task=task, yaml_path=yaml_path, data_path=data_path, n_items=len(rows), left_out=left_out)


# ---------------------------------------------------------------- loading tasks

def is_lm_eval_suite(suite: str) -> bool:
    return suite.startswith(PREFIX)


def parse_specs(suites: Sequence[str]) -> list[str]:
    """`["lm-eval:mmlu,arc_easy", "lm-eval:out/t.yaml"]` -> `["mmlu", "arc_easy", "out/t.yaml"]`."""
    specs = []
    for arg in suites:
        parts = [p.strip() for p in arg.removeprefix(PREFIX).split(",")]
        if not all(parts):
            raise ForgetlessError(f"empty lm-eval task name in {arg!r}", hint="write --suite lm-eval:TASK[,TASK...]")
        specs.extend(parts)
    return specs


@dataclass
class LmEvalTasks:
    """lm-eval tasks loaded and checked before any model is, so a typo fails in seconds."""

    manager: Any  # lm_eval.tasks.TaskManager
    suites: dict[str, dict[str, Any]]  # "lm-eval:NAME" -> {leaf task name: lm_eval Task}
    paths: dict[str, str | None]  # suite -> the YAML file it was given by

    def exported(self) -> dict[str, dict[str, Any]]:
        """Leaf tasks written by `export_suite` -> their forgetless metadata."""
        out = {}
        for leaves in self.suites.values():
            for name, task in leaves.items():
                meta = (task.config.metadata or {}).get("forgetless")
                if isinstance(meta, dict):
                    out[name] = meta
        return out


def _is_path(spec: str) -> bool:
    return spec.endswith((".yaml", ".yml")) or "/" in spec or "\\" in spec


def _first_line(e: BaseException) -> str:
    text = str(e).strip().strip("\"'")
    return text.splitlines()[0][:200] if text else type(e).__name__


def _group_name(path: Path) -> str | None:
    """The group a YAML file defines: lm-eval loads a group by its name (by its path it fails). A group file
    holds plain keys; a task file with lm-eval's own tags (`!function`) is not one, and is left to lm-eval."""
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    group = config.get("group") if isinstance(config, dict) else None
    return group if isinstance(group, str) and "task" in config else None


def _load_one(manager: Any, spec: str, path: Path | None) -> dict[str, Any]:
    """`{leaf task name: Task}` for one task, group or tag; only tasks with a per-item outcome pass."""
    group = _group_name(path) if path else None
    try:
        leaves = manager.load([group or str(path or spec)])["tasks"]
    except KeyError:
        close = difflib.get_close_matches(spec, manager.all_tasks, n=1)
        raise ForgetlessError(f"unknown lm-eval task '{spec}'",
                              hint=(f"did you mean '{close[0]}'? " if close else "") + "`lm-eval ls tasks` lists "
                                   "them; give a task written by `forgetless export-lm-eval` by its .yaml path"
                              ) from None
    except Exception as e:  # a dataset missing offline, a broken YAML: lm-eval raises many types
        raise ForgetlessError(f"could not load lm-eval task '{spec}': {_first_line(e)}",
                              hint="offline, a task's dataset must already be in the Hugging Face cache or in "
                                   "local files") from None
    for name, task in leaves.items():
        kind = task.config.output_type
        if kind not in PER_ITEM:
            raise ForgetlessError(f"lm-eval task '{name}' is {kind}: forgetless turns only multiple_choice and "
                                  "generate_until tasks into per-item results",
                                  hint="run that task with lm-eval itself")
        if getattr(task, "multiple_input", 0):
            raise ForgetlessError(f"lm-eval task '{name}' has one context per choice (like winogrande), which "
                                  "forgetless results cannot hold", hint="run that task with lm-eval itself")
    return dict(leaves)


def load_tasks(specs: Sequence[str]) -> LmEvalTasks:
    """Load lm-eval tasks by name (task, group or tag) or by the path of a task YAML."""
    _require_lm_eval()
    import datasets
    from lm_eval.tasks import TaskManager

    datasets.disable_progress_bars()  # "Generating test split" for every local file is noise

    paths = {s: Path(s).expanduser().resolve() for s in specs if _is_path(s)}
    for spec, path in paths.items():
        if not path.is_file():
            raise ForgetlessError("lm-eval task file not found", where=spec)
    # Indexing lm-eval's own thousands of tasks takes seconds: skip it when only files are named.
    manager = TaskManager(include_path=sorted({str(p.parent) for p in paths.values()}) or None,
                          include_defaults=len(paths) < len(specs))
    suites: dict[str, dict[str, Any]] = {}
    owner: dict[str, str] = {}
    where: dict[str, str | None] = {}
    for spec in specs:
        with ifeval_offline():  # IFEval's module asks for NLTK data at import; langdetect seeded
            leaves = _load_one(manager, spec, paths.get(spec))
        mixed = len({task.config.output_type for task in leaves.values()}) > 1
        for part in [{leaf: task} for leaf, task in leaves.items()] if mixed else [leaves]:  # mixed: a suite per task
            if mixed or (spec in paths and len(part) == 1):
                name = PREFIX + next(iter(part))
            else:
                name = PREFIX + (paths[spec].stem if spec in paths else spec)
            for leaf in part:
                if leaf in owner:
                    raise ForgetlessError(f"lm-eval task '{leaf}' is asked for twice (in {owner[leaf]} and {name})",
                                          hint="name each task once")
                owner[leaf] = name
            suites[name] = part
            where[name] = str(paths[spec]) if spec in paths else None
    return LmEvalTasks(manager=manager, suites=suites, paths=where)


# ---------------------------------------------------------------- running

@functools.cache
def _bridge_lm_class() -> type:
    """lm-eval's HFLM, except that exported tasks keep their context/choice boundary, and greedy generation
    runs on forgetless's batched decoder wherever it asks what lm-eval's own loop asks (module doc)."""
    import copy

    from lm_eval.models.huggingface import HFLM
    from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text

    from forgetless.eval.generate import greedy_tokens
    from forgetless.eval.prompts import encode_start

    class BridgeLM(HFLM):
        exact_tasks: frozenset[str] = frozenset()
        decode_batch: int = 16
        generated_by: Counter  # requests answered by each loop: "forgetless", "lm-eval"

        def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
            exact = [i for i, r in enumerate(requests) if r.task_name in self.exact_tasks]
            if not exact:
                return super().loglikelihood(requests, disable_tqdm=disable_tqdm)
            chosen = set(exact)
            rest = [i for i in range(len(requests)) if i not in chosen]
            out = dict(zip(rest, super().loglikelihood([requests[i] for i in rest], disable_tqdm) if rest else []))
            tokens = [(requests[i].args, encode(self.tokenizer, requests[i].args[0]),
                       encode(self.tokenizer, requests[i].args[1])) for i in exact]
            out.update(zip(exact, self._loglikelihood_tokens(tokens, disable_tqdm=disable_tqdm)))
            return [out[i] for i in range(len(requests))]

        def _greedy_plan(self, request: Any) -> tuple[list[str], int] | None:
            """(stop strings, new tokens) when forgetless's decoder would see what lm-eval's loop sees: greedy,
            no other generation setting, the same context tokens (BOS included), nothing truncated."""
            context, kwargs = request.args
            kw = normalize_gen_kwargs(copy.deepcopy(kwargs), self.max_gen_toks)
            eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
            until, n = handle_stop_sequences(kw.pop("until", None), eos=eos), kw.pop("max_gen_toks")
            if kw.pop("do_sample", False) or kw.pop("temperature", 0.0) or kw or self.think_end_token is not None:
                return None
            ids = encode_start(self.tokenizer, context)
            if len(ids) + n > self.max_length or ids != self.tok_batch_encode([context])[0][0].tolist():
                return None
            return until, n

        def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
            plans = {i: plan for i, r in enumerate(requests) if (plan := self._greedy_plan(r)) is not None}
            rest = [i for i in range(len(requests)) if i not in plans]
            out = dict(zip(rest, super().generate_until([requests[i] for i in rest], disable_tqdm) if rest else []))
            groups: dict[tuple[tuple[str, ...], int], list[int]] = {}
            for i, (until, n) in plans.items():
                groups.setdefault((tuple(until), n), []).append(i)
            for (until, n), idx in groups.items():
                def written(tokens: list[int], until: tuple[str, ...] = until) -> bool:  # lm-eval stops there too
                    return any(u and u in self.tok_decode(tokens) for u in until)

                replies = greedy_tokens(self.model, self.tokenizer, [requests[i].args[0] for i in idx],
                                        max_new_tokens=n, batch_size=self.decode_batch, stop=written)
                for i, tokens in zip(idx, replies):  # lm-eval's own decoding and stop-string cut
                    out[i] = postprocess_generated_text(self.tok_decode(tokens), plans[i][0], None)
                    self.cache_hook.add_partial("generate_until", requests[i].args, out[i])
            self.generated_by.update({"forgetless": len(plans), "lm-eval": len(rest)})
            return [out[i] for i in range(len(requests))]

    return BridgeLM


def bridge_lm(model: LoadedModel, *, batch_size: int = 16, exact_tasks: Sequence[str] = ()) -> Any:
    """An lm-eval model over a model already in memory (no second copy of the weights)."""
    _require_lm_eval()
    lm = _bridge_lm_class()(pretrained=model.model, tokenizer=model.tokenizer, batch_size=batch_size)
    lm.exact_tasks = frozenset(exact_tasks)
    lm.decode_batch = batch_size
    lm.generated_by = Counter()
    return lm


def _check_templates(exported: dict[str, dict[str, Any]], tokenizer: Any) -> None:
    mine = template_fingerprint(tokenizer)
    for name, meta in exported.items():
        if meta.get("template") != mine:
            raise ForgetlessError(f"lm-eval task '{name}' was exported with another chat template "
                                  f"(fingerprint {meta.get('template')}, this model's is {mine})",
                                  hint="re-export it with `forgetless export-lm-eval ... --model` naming this model")


def _pairs(arguments: Any) -> list[tuple[str, str]]:
    """A sample's (context, continuation) per choice; newer lm-eval logs them as dicts."""
    if isinstance(arguments, dict):
        return [(a["arg_0"], a["arg_1"]) for a in arguments.values()]
    return [(a[0], a[1]) for a in arguments]


def _gold(target: Any, choices: list[str]) -> list[int]:
    """lm-eval's `doc_to_target`: an index, a list of indices, or the text of a choice."""
    out = []
    for t in target if isinstance(target, list) else [target]:
        if isinstance(t, str):
            t = choices.index(t) if t in choices else int(t) if t.strip().isdigit() else -1
        out.append(int(t))
    return [g for g in out if 0 <= g < len(choices)]


def _mc_items(suite: str, leaf: str, samples: list[dict[str, Any]], config: dict[str, Any], exported: bool,
              grouped: bool) -> list[ItemResult]:
    """lm-eval's logged samples of one multiple_choice task as mc ItemResults, in document order."""
    delimiter = config.get("target_delimiter", " ")
    mutual = any(isinstance(m, dict) and m.get("metric") == "acc_mutual_info" for m in config.get("metric_list") or [])
    out = []
    for s in sorted(samples, key=lambda s: s["doc_id"]):
        pairs = _pairs(s["arguments"])
        pairs = pairs[: len(pairs) // 2] if mutual else pairs  # the unconditional twins come last
        logliks = [float(r[0]) for r in s["filtered_resps"][: len(pairs)]]
        doc = s["doc"]
        # an exported item's own choices: after its answer prefix the scored texts carry a leading space
        choices = list(doc["choices"]) if exported else [cont.removeprefix(delimiter) for _, cont in pairs]
        gold = _gold(s["target"], choices)
        score = make_score(logliks, choices)  # acc_norm per UTF-8 byte: lm-eval's acc_bytes
        item_id = str(doc["id"]) if exported else f"{leaf}/{s['doc_id']}" if grouped else str(s["doc_id"])
        out.append(ItemResult(suite=suite, id=item_id, type="mc", category=str(doc["category"]) if exported else leaf,
                              prompt=pairs[0][0], choices=choices, answer=gold[0] if gold else None, logliks=logliks,
                              pred=score.pred, correct=score.pred in gold, correct_norm=score.pred_norm in gold))
    return out


def _binary(value: Any) -> bool | None:
    """A per-item metric value as pass/fail, or None when it is not a 0/1 outcome (BLEU, F1...)."""
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    return None


def _checks(sample: dict[str, Any]) -> list[CheckOutcome]:
    """Every 0/1 metric of one logged sample (one filter) as a check; a list of them (IFEval's per-instruction
    accuracy) gives one check per entry, named by the doc's `instruction_id_list` where it has one."""
    where = "" if sample["filter"] == "none" else f" after {sample['filter']}"
    names = sample["doc"].get("instruction_id_list") if isinstance(sample["doc"], dict) else None
    out = []
    for metric in sample["metrics"]:
        value = sample[metric]
        if isinstance(value, list):  # one outcome per instruction (IFEval)
            labels = names if isinstance(names, list) and len(names) == len(value) else range(len(value))
            named = [(f"{metric}:{label}", part) for label, part in zip(labels, value)]
        else:
            named = [(metric, value)]
        for kind, part in named:
            passed = _binary(part)
            if passed is not None:
                out.append(CheckOutcome(kind=kind, passed=passed, describe=kind + where))
    return out


def _gen_items(suite: str, leaf: str, samples: list[dict[str, Any]], exported: bool,
               grouped: bool) -> list[ItemResult]:
    """lm-eval's logged samples of one generate_until task as gen ItemResults, in document order.

    lm-eval logs a sample per document and filter, in the task's filter order. The item is correct when the
    first metric after the first filter is (the task's headline: GSM8K's strict-match exact_match, IFEval's
    prompt-level strict accuracy); every metric after every filter is kept as a check.
    """
    by_doc: dict[int, list[dict[str, Any]]] = {}
    for s in samples:
        by_doc.setdefault(s["doc_id"], []).append(s)
    out = []
    for doc_id in sorted(by_doc):
        logged = by_doc[doc_id]
        first, metric = logged[0], logged[0]["metrics"][0]
        correct = _binary(first[metric])
        if correct is None:
            raise ForgetlessError(f"lm-eval task '{leaf}' scores an item {metric}={first[metric]!r}, not pass or "
                                  "fail, so its items cannot be paired", hint="run that task with lm-eval itself")
        doc = first["doc"]
        item_id = str(doc["id"]) if exported else f"{leaf}/{doc_id}" if grouped else str(doc_id)
        out.append(ItemResult(suite=suite, id=item_id, type="gen", category=str(doc["category"]) if exported else leaf,
                              prompt=_pairs(first["arguments"])[0][0], correct=correct,
                              reply=first["resps"][0][0], checks=[c for s in logged for c in _checks(s)]))
    return out


def _items(suite: str, leaf: str, samples: list[dict[str, Any]], config: dict[str, Any], exported: bool,
           grouped: bool) -> list[ItemResult]:
    if config.get("output_type") == "generate_until":
        return _gen_items(suite, leaf, samples, exported, grouped)
    return _mc_items(suite, leaf, samples, config, exported, grouped)


def _record(name: str, path: str | None, items: list[ItemResult]) -> SuiteRecord:
    """The sha256 covers what was asked (ids, prompts, choices, answers): a new task version or
    another few-shot setting makes `compare` refuse to pair."""
    rows = sorted([it.id, it.prompt, it.choices, it.answer] for it in items)
    digest = hashlib.sha256(json.dumps(rows, ensure_ascii=True, separators=(",", ":")).encode()).hexdigest()
    types = {t: 0 for t in ITEM_TYPES} | Counter(it.type for it in items)
    categories = dict(sorted(Counter(it.category for it in items).items()))
    return SuiteRecord(name=name, path=path, sha256=digest, counts={"types": types, "categories": categories})


def evaluate_lm_eval(model: LoadedModel, tasks: LmEvalTasks | Sequence[str], *, batch_size: int = 16,
                     limit: int | None = None, apply_chat_template: bool = False) -> EvalResult:
    """Run lm-eval tasks on a model in memory through `lm_eval.simple_evaluate`, one ItemResult per sample.

    `apply_chat_template` is lm-eval's own setting: each prompt goes into the model's chat template as one
    user turn (IFEval and GSM8K's chat variants are run so on instruct models).

    Suites are named `lm-eval:TASK`; items of a group are `SUBTASK/DOC_ID` in category SUBTASK,
    items of an exported suite keep their own ids and categories.
    """
    lm_eval = _require_lm_eval()
    tasks = tasks if isinstance(tasks, LmEvalTasks) else load_tasks([tasks] if isinstance(tasks, str) else tasks)
    exported = tasks.exported()
    _check_templates(exported, model.tokenizer)
    lm = bridge_lm(model, batch_size=batch_size, exact_tasks=list(exported))
    net = model.model
    was_training = net.training
    net.eval()
    start = time.perf_counter()
    try:
        out = lm_eval.simple_evaluate(model=lm, tasks=[t for leaves in tasks.suites.values() for t in leaves.values()],
                                      task_manager=tasks.manager, limit=limit, log_samples=True, bootstrap_iters=0,
                                      apply_chat_template=apply_chat_template)
    finally:
        net.train(was_training)
    elapsed = round(time.perf_counter() - start, 3)
    items: list[ItemResult] = []
    records = []
    for suite, leaves in tasks.suites.items():
        rows = [it for leaf in leaves for it in _items(suite, leaf, out["samples"][leaf], out["configs"][leaf],
                                                          leaf in exported, grouped=len(leaves) > 1)]
        records.append(_record(suite, tasks.paths[suite], rows))
        items.extend(rows)
    param = next(net.parameters())
    settings = {"open_ended": False, "template": template_fingerprint(model.tokenizer),
                "dtype": str(param.dtype).removeprefix("torch."), "device": str(param.device),
                "lm_eval": {"batch_size": batch_size, "limit": limit, "apply_chat_template": apply_chat_template,
                            "generated_by": dict(lm.generated_by),
                            "num_fewshot": {leaf: out["configs"][leaf].get("num_fewshot")
                                            for leaves in tasks.suites.values() for leaf in leaves}}}
    return EvalResult(model=model.describe(), suites=records, settings=settings,
                      versions={**library_versions(), "lm-eval": version("lm-eval")}, summary=summarize(items),
                      timings={PREFIX + "all tasks": elapsed}, training=model.training, items=items)


def combine(native: EvalResult, bridged: EvalResult) -> EvalResult:
    """One results file for `--suite general --suite lm-eval:mmlu`: the suites side by side."""
    if not native.suites:
        return bridged
    return native.model_copy(update={
        "suites": native.suites + bridged.suites, "items": native.items + bridged.items,
        "summary": {**native.summary, **bridged.summary}, "timings": {**native.timings, **bridged.timings},
        "settings": {**native.settings, "lm_eval": bridged.settings["lm_eval"]},
        "versions": {**native.versions, **bridged.versions}})
