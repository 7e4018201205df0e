"""`forgetless train CONFIG.yaml`: a thin wrapper over `forgetless.train.train`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from forgetless.cli.console import console, err_console, info, print_json, progress_bar, quiet_libraries, state
from forgetless.cli.main import app
from forgetless.train.config import field_docs, load_config

if TYPE_CHECKING:  # the recipe pulls in transformers' Trainer: imported only when training
    from forgetless.train.recipe import TrainResult


def _config_reference() -> str:
    """Every config key with its default and description, for `--help` (from the pydantic fields)."""
    lines = ["[bold]Config keys[/] (YAML, or --set key.sub=value):"]
    for key, default, description in field_docs():
        shown = f" = {default}" if default else ""
        lines.append(escape(f"{key}{shown}: {description}"))
    return "\n\n".join(lines)


def rich_progress(bar: Any) -> Any:
    """A TrainerCallback showing steps done and the latest loss on our Rich bar (not the Trainer's tqdm)."""
    from transformers import TrainerCallback

    class RichProgress(TrainerCallback):
        task = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.task is None:
                self.task = bar.add_task("training", total=state.max_steps)
            bar.update(self.task, completed=state.global_step)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if self.task is not None and logs and "loss" in logs:
                bar.update(self.task, description=f"training  loss {logs['loss']:.3f}")

    return RichProgress()


def print_summary(result: TrainResult) -> None:
    table = Table(title="Training run", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    counts = result.counts
    rows = [("run folder", str(result.run_dir)), ("steps", str(result.steps)),
            ("final loss", f"{result.final_loss:.4f}" if result.final_loss is not None else "-"),
            ("domain examples", str(counts["domain_examples"])),
            ("replay examples", f"{counts['replay_examples']} ({100 * counts['replay_share']:.1f}% of the mix, "
                                f"{counts['replay_source']})"),
            ("trainable", result.trainable["text"]), ("time", f"{result.seconds:.0f} s")]
    for key, value in rows:
        table.add_row(key, escape(value))
    console.print(table)
    info(f"next: [bold]forgetless eval {escape(str(result.run_dir))} --reference base[/]")


@app.command("train", epilog=_config_reference())
def train_command(
    config: Path = typer.Argument(..., help="YAML training config (see examples/)."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config key, e.g. --set lora.r=8; repeatable."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in the run folder."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (wins over `out:` in the config)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    plan: bool = typer.Option(False, "--plan", help="Print the peak memory per device, item by item; reads no weights."),
) -> None:
    """Fine-tune a model as CONFIG says, with replay and regularizers against forgetting.

    Examples:
      forgetless train examples/lora-replay-ewc.yaml --out runs/lora
      forgetless train examples/full-aggressive.yaml --set learning_rate=1e-5 --out runs/full
      forgetless train examples/lora-replay-ewc.yaml --out runs/lora --resume
      forgetless train examples/full-aggressive.yaml --plan
    """
    from forgetless.train.recipe import is_main_process, train

    settings = load_config(config, [*overrides, *([f"out={out}"] if out else [])])
    quiet_libraries()
    if plan:
        from dataclasses import asdict

        from forgetless.train.plan import plan_memory

        memory = plan_memory(settings)
        if as_json:
            print_json({**asdict(memory), "peak": memory.peak, "fits": memory.fits})
        else:
            console.print(escape(memory.render()), soft_wrap=True, highlight=False)
        return

    def warn(message: str) -> None:
        err_console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)

    info(f"training [bold]{escape(settings.model)}[/] ({settings.method}) on [bold]{escape(settings.data)}[/]")
    with progress_bar() as bar:
        callbacks = [] if state["quiet"] else [rich_progress(bar)]
        result = train(settings, callbacks=callbacks, resume=resume, progress=False, notify=warn)
    if not is_main_process():  # under `accelerate launch`: one summary, from rank 0 (which records the run)
        return
    if as_json:
        print_json({"run_dir": str(result.run_dir), "steps": result.steps, "final_loss": result.final_loss,
                    "seconds": result.seconds, "data": result.counts, "trainable": result.trainable,
                    "warnings": result.warnings})
        return
    print_summary(result)
