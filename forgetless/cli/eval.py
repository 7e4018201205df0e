"""`forgetless eval` and `forgetless suites`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from forgetless.cli.console import console, info, print_json, quiet_libraries, run_with_progress
from forgetless.cli.main import app
from forgetless.eval import DEFAULT_SUITES, EvalSettings, evaluate, run_reference
from forgetless.history import called_as
from forgetless.integrations import lm_eval as lm_eval_bridge
from forgetless.io import check_output_path
from forgetless.models import load_model
from forgetless.suites import list_bundled_suites, load_suite


def model_options(adapter: Optional[Path], device: Optional[str], dtype: Optional[str], trust_remote_code: bool,
                  allow_pickle: bool) -> dict:
    return dict(adapter=adapter, device=device, dtype=dtype, trust_remote_code=trust_remote_code,
                allow_pickle=allow_pickle)


def print_summary(summary: dict) -> None:
    table = Table(title="Results")
    for column in ["suite", "n", "mc acc", "mc open", "gen acc", "checks", "ppl", "KL"]:
        table.add_column(column, justify="right" if column != "suite" else "left")

    def cell(v):
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    for suite, data in summary.items():
        m = data["overall"]
        table.add_row(suite, str(m["n"]), *(cell(m.get(k)) for k in
                                             ("mc_acc", "mc_open_acc", "gen_acc", "check_pass", "perplexity", "kl")))
    console.print(table)


@app.command("eval")
def eval_command(
    model: str = typer.Argument(..., help="Built-in name, local folder, .gguf file, hub id, or a forgetless run folder."),
    suite: list[str] = typer.Option(list(DEFAULT_SUITES), "--suite", "-s", help="Bundled suite name, JSONL file, or lm-eval:TASK[,TASK...] (docs/lm-eval.md); repeatable."),
    out: Path = typer.Option(Path("results.json"), "--out", "-o", help="Where to write per-item results (JSON)."),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="A PEFT adapter folder to put on the model."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Model to measure KL against; 'base' = the adapter's own base."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Items per forward pass (scores do not depend on it)."),
    open_ended: bool = typer.Option(True, "--open-ended/--no-open-ended", help="Also ask each multiple-choice question without choices."),
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", min=1, help="Token limit for short answers."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="lm-eval tasks: score the first N documents of each."),
    apply_chat_template: bool = typer.Option(False, "--apply-chat-template", help="lm-eval tasks: put each prompt in the model's chat template (lm-eval's --apply_chat_template; IFEval on instruct models)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N, mps (default: best available)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, bfloat16 or float16 (default: bf16 on CUDA, else fp32)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Run code shipped with the model (off by default)."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Accept pickle (.bin) weights (off by default)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Score a model on probe suites, item by item, and write a results file for `compare`.

    Examples:
      forgetless eval smollm2-135m --out before.json
      forgetless eval runs/demo --reference base --out after.json
      forgetless eval ./my-model --suite general --suite my_suite.jsonl
      forgetless eval smollm2-135m --suite lm-eval:arc_easy,tasks/forgetless_general.yaml
    """
    check_output_path(out)
    lm_specs = lm_eval_bridge.parse_specs([s for s in suite if lm_eval_bridge.is_lm_eval_suite(s)])
    suites = [load_suite(s) for s in suite if not lm_eval_bridge.is_lm_eval_suite(s)]
    if lm_specs:  # loaded once, here: a typo fails before the model loads
        suites.append(lm_eval_bridge.load_tasks(lm_specs))
    quiet_libraries()
    info(f"loading [bold]{model}[/]")
    opts = model_options(adapter, device, dtype, trust_remote_code, allow_pickle)
    loaded = load_model(model, **opts)
    ref = run_reference(loaded, reference, **{k: v for k, v in opts.items() if k != "adapter"})
    settings = EvalSettings(batch_size=batch_size, open_ended=open_ended, max_new_tokens=max_new_tokens,
                            lm_eval_limit=limit, lm_eval_chat_template=apply_chat_template)
    with called_as(results=out):
        result = run_with_progress(evaluate, loaded, suites, reference=ref, settings=settings)
    result.save(out)
    if as_json:
        print_json({"out": str(out), "summary": result.summary, "timings": result.timings})
        return
    print_summary(result.summary)
    info(f"per-item results written to [bold]{out}[/]")


@app.command("suites")
def suites_command(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List the bundled probe suites with item counts per type and category."""
    data = {}
    for name in list_bundled_suites():
        s = load_suite(name)
        data[name] = {"path": str(s.path), "sha256": s.sha256, **s.counts()}
    if as_json:
        print_json(data)
        return
    table = Table(title="Bundled suites")
    for column in ["suite", "mc", "gen", "check", "text", "categories"]:
        table.add_column(column)
    for name, d in data.items():
        t = d["types"]
        cats = ", ".join(f"{c} {n}" for c, n in d["categories"].items())
        table.add_row(name, *(str(t[k]) for k in ("mc", "gen", "check", "text")), cats)
    console.print(table)
