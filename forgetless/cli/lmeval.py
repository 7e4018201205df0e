"""`forgetless export-lm-eval`: a probe suite as an lm-evaluation-harness task."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from forgetless.cli.console import err_console, info, print_json, quiet_libraries, state
from forgetless.cli.main import app
from forgetless.errors import ForgetlessError
from forgetless.integrations.lm_eval import LEFT_OUT, export_suite
from forgetless.models import load_model
from forgetless.models.builtin import DEFAULT_MODEL
from forgetless.suites import load_suite


def _command(text: str) -> None:
    """A command line to copy: printed whole, never wrapped."""
    if not state["quiet"]:
        err_console.print(text, soft_wrap=True, markup=False, highlight=False)


@app.command("export-lm-eval")
def export_lm_eval_command(
    suite: str = typer.Argument(..., help="Bundled suite name or JSONL file."),
    out_dir: Path = typer.Argument(..., help="Folder for the task's YAML and data file (created if missing)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m",
                              help="Model whose chat template renders the prompts: the one you will run the task on."),
    task: Optional[str] = typer.Option(None, "--task",
                                       help="lm-eval task name (default: forgetless_SUITE; the gen task: TASK_gen)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Run code shipped with the model (off by default)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Write a suite's items as lm-eval tasks that run offline (YAML + JSONL): mc items as a multiple_choice
    task, gen items as a generate_until task (TASK_gen) scored by forgetless's own answer matching.

    Prompts are rendered with the model's chat template, exactly as `forgetless eval` renders them.
    check and text items are left out: declarative checks and drift have no lm-eval equivalent.

    Examples:
      forgetless export-lm-eval general lm-eval-tasks/
      lm-eval run --model hf --model_args pretrained=MODEL_FOLDER --tasks forgetless_general --include_path lm-eval-tasks/
      forgetless eval smollm2-135m --suite lm-eval:lm-eval-tasks/forgetless_general.yaml --out before.json
    """
    loaded_suite = load_suite(suite)
    kinds = [k for k in ("mc", "gen") if loaded_suite.by_type(k)]
    if not kinds:
        raise ForgetlessError(f"suite {loaded_suite.name} has no mc or gen items to export as lm-eval tasks",
                              where=loaded_suite.path, hint="check and text items have no lm-eval equivalent")
    quiet_libraries()
    loaded = load_model(model, device="cpu", trust_remote_code=trust_remote_code)  # only its tokenizer is used
    names = {"mc": task, "gen": task and (task + "_gen" if "mc" in kinds else task)}  # None: the default names
    done = [export_suite(loaded_suite, loaded.tokenizer, out_dir, task=names[k], kind=k) for k in kinds]
    left_out = {t: n for t, n in done[0].left_out.items() if t not in kinds}
    if as_json:
        print_json({"tasks": [{"task": d.task, "yaml": str(d.yaml_path), "data": str(d.data_path), "items": d.n_items}
                              for d in done],
                    "task": done[0].task, "yaml": str(done[0].yaml_path), "data": str(done[0].data_path),
                    "items": done[0].n_items, "left_out": left_out, "model_folder": loaded.path})
        return
    for kind, d in zip(kinds, done):
        info(f"wrote lm-eval task [bold]{d.task}[/] ({d.n_items} {kind} items) to [bold]{d.yaml_path}[/]")
    for kind, n in left_out.items():
        info(f"left out {n} {kind} items: {LEFT_OUT[kind]}")
    info("run it with either of:")
    tasks = ",".join(d.task for d in done)
    _command(f"  lm-eval run --model hf --model_args pretrained={loaded.path} --tasks {tasks} --include_path {out_dir}")
    _command(f"  forgetless eval {model} " + " ".join(f"--suite lm-eval:{d.yaml_path}" for d in done))
