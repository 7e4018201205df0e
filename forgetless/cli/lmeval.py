"""`forgetless export-lm-eval`: a probe suite as an lm-evaluation-harness task."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from forgetless.cli.console import err_console, info, print_json, quiet_libraries, state
from forgetless.cli.main import app
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
    task: Optional[str] = typer.Option(None, "--task", help="lm-eval task name (default: forgetless_SUITE)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Run code shipped with the model (off by default)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Write a suite's multiple-choice items as an lm-eval task that runs offline (YAML + JSONL).

    Prompts are rendered with the model's chat template, exactly as `forgetless eval` renders them.
    gen, check and text items are left out: lm-eval's multiple_choice tasks carry only mc items, and
    forgetless's declarative checks have no lm-eval equivalent.

    Examples:
      forgetless export-lm-eval general lm-eval-tasks/
      lm-eval run --model hf --model_args pretrained=MODEL_FOLDER --tasks forgetless_general --include_path lm-eval-tasks/
      forgetless eval smollm2-135m --suite lm-eval:lm-eval-tasks/forgetless_general.yaml --out before.json
    """
    loaded_suite = load_suite(suite)
    quiet_libraries()
    loaded = load_model(model, device="cpu", trust_remote_code=trust_remote_code)  # only its tokenizer is used
    done = export_suite(loaded_suite, loaded.tokenizer, out_dir, task=task)
    if as_json:
        print_json({"task": done.task, "yaml": str(done.yaml_path), "data": str(done.data_path),
                    "items": done.n_items, "left_out": done.left_out, "model_folder": loaded.path})
        return
    info(f"wrote lm-eval task [bold]{done.task}[/] ({done.n_items} mc items) to [bold]{done.yaml_path}[/]")
    for kind, n in done.left_out.items():
        info(f"left out {n} {kind} items: {LEFT_OUT[kind]}")
    info("run it with either of:")
    _command(f"  lm-eval run --model hf --model_args pretrained={loaded.path} --tasks {done.task} --include_path {out_dir}")
    _command(f"  forgetless eval {model} --suite lm-eval:{done.yaml_path}")
