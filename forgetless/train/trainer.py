"""The Hugging Face `Trainer`, plus regularizer penalties: loss = task_loss + sum_i penalty_i.

Only `compute_loss` and `log` are overridden (as TRL does), so everything else — `accelerate
launch` scale-out, mixed precision, checkpoints and resume — is the Trainer's own. Each term is
logged on its own (`loss_task`, `penalty_ewc`, ...), averaged over the logging window exactly like
the Trainer's `loss`, so `loss ~= loss_task + sum(penalty_*)` in every log line.

A non-finite loss stops training before the next checkpoint is written, so the last checkpoint
on disk is always a good one; the recipe turns that into a clear error.
"""

from __future__ import annotations

import math
import signal
import threading
from dataclasses import dataclass
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from forgetless.errors import ForgetlessError
from forgetless.train.data import PENALTY_KEYS


@dataclass
class NonFinite:
    step: int
    terms: dict[str, float]


class NonFiniteGuard(TrainerCallback):
    """Stops training, and cancels that step's checkpoint, once the trainer has seen a NaN/inf loss."""

    def __init__(self) -> None:
        self.bad: NonFinite | None = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.bad is not None:
            control.should_training_stop = True
            control.should_save = False
        return control


class SaveOnInterrupt(TrainerCallback):
    """Ctrl-C finishes the current step, saves a checkpoint and stops, so `--resume` loses nothing.

    The first SIGINT only sets a flag (and puts the previous handler back, so a second Ctrl-C
    aborts at once); the step boundary then asks the Trainer to save and stop. Only the main
    thread can own a signal handler; elsewhere Ctrl-C keeps its default behaviour.
    """

    def __init__(self) -> None:
        self.step: int | None = None  # the step at which training stopped for the interrupt
        self._requested = False
        self._previous: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return control

    def _handle(self, signum: int, frame: Any) -> None:
        self._requested = True
        signal.signal(signal.SIGINT, self._previous)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self._requested and self.step is None:
            self.step = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self._previous is not None and not self._requested:
            signal.signal(signal.SIGINT, self._previous)
        self._previous = None
        return control


class LogLastStep(TrainerCallback):
    """Logs the final step too, so the last loss (and penalties) of a run always reach the log."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if control.should_training_stop or state.global_step >= state.max_steps:
            control.should_log = True
        return control


class PenaltyTrainerMixin:
    """Adds the penalties of `regularizers`, a list of (log name, regularizer), to any Trainer's loss.

    Put it first: `class MyTrainer(PenaltyTrainerMixin, SFTTrainer)`. A regularizer has
    `penalty(model, batch, outputs=None) -> Tensor` (already weighted) and may have
    `prepare(accelerator)`, called once here (a frozen reference model). It gets the outputs of the
    task forward pass, so a KL term reuses the logits, only from the plain `Trainer.compute_loss`:
    other trainers (TRL's fused LM head) may return no logits, or logits without gradient.
    """

    def __init__(self, *args: Any, regularizers: list[tuple[str, Any]] | None = None,
                 guard: NonFiniteGuard | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.regularizers = list(regularizers or [])
        self._refuse_sharded_weights()
        for _, reg in self.regularizers:
            if hasattr(reg, "prepare"):
                reg.prepare(self.accelerator)
        self.guard = guard
        self._sums: dict[str, float] = {}  # logged term -> sum of its contributions in this window
        self._window_start = 0  # global step at which the current logging window began

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        extra = {k: inputs.pop(k) for k in PENALTY_KEYS if k in inputs}  # for the penalties, not the model
        penalize = model.training and bool(self.regularizers)
        plain = self.accelerator.unwrap_model(model) if penalize else None
        # weight penalties first: FSDP2 holds the root module's weights whole from its forward to its backward
        early = {name: reg.penalty(plain) for name, reg in self.regularizers
                 if getattr(reg, "weights_only", False)} if penalize else {}
        task, outputs, reuse = self.task_loss(model, inputs, return_outputs, num_items_in_batch)
        # The Trainer divides the returned loss by the accumulation steps unless the task loss was
        # already normalized over the whole accumulated batch; penalties must match that scale.
        scaled = getattr(self, "loss_is_scaled_for_ga", None)  # an attribute since transformers 5.2x
        if scaled is None:
            scaled = (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or \
                self.compute_loss_func is not None
        steps = getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)
        ga = steps if scaled else 1
        report = 1 if scaled else steps  # per-step share, for logs
        terms = {"loss_task": task}
        loss = task
        if penalize:
            batch = {**inputs, **extra}
            for name, reg in self.regularizers:
                penalty = early[name] if name in early else reg.penalty(plain, batch, outputs=outputs if reuse else None)
                penalty = penalty / ga
                terms[name] = penalty
                loss = loss + penalty
        if model.training:
            self._record(terms, report)
        return (loss, outputs) if return_outputs else loss

    def task_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool,
                  num_items_in_batch: Any) -> tuple[torch.Tensor, Any, bool]:
        """(task loss, outputs, whether the penalties may reuse the outputs' logits)."""
        reuse = super().compute_loss.__func__ is Trainer.compute_loss  # its outputs carry the logits, with grad
        result = super().compute_loss(model, inputs, return_outputs=return_outputs or reuse,  # type: ignore[misc]
                                      num_items_in_batch=num_items_in_batch)
        task, outputs = result if (return_outputs or reuse) else (result, None)
        return task, outputs, reuse

    def _refuse_sharded_weights(self) -> None:
        """What runs where each process holds a shard of every weight (docs/scale-out.md). FSDP2: EWC and
        L2-SP on their shards (`regularizers/sharded.py`), KL on precomputed targets (it reads outputs only).
        FSDP1 (flat parameters) and DeepSpeed ZeRO-3 hide the shards' layout: no regularizer there. The
        forgetting monitor reads whole weights in one process: refused under any sharding."""
        state = self.accelerator.state
        zero3 = getattr(getattr(state, "deepspeed_plugin", None), "zero_stage", 0) == 3
        fsdp = getattr(self, "is_fsdp_enabled", False)
        if not (zero3 or fsdp):
            return
        fsdp2 = fsdp and getattr(getattr(state, "fsdp_plugin", None), "fsdp_version", 1) == 2
        kind = "FSDP2" if fsdp2 else "FSDP" if fsdp else "DeepSpeed ZeRO-3"
        from forgetless.train.monitor import ForgettingMonitor

        if any(isinstance(cb, ForgettingMonitor) for cb in self.callback_handler.callbacks):
            raise ForgetlessError(f"the forgetting monitor needs whole weights in one process, but {kind} shards them",
                                  hint="turn it off (monitor: null) and run `forgetless eval` on the saved model")
        for _, reg in self.regularizers:
            precomputed = getattr(getattr(reg, "config", None), "top_k", 0) > 0  # KL on targets computed once
            if fsdp2 and (getattr(reg, "weights_only", False) or precomputed):
                continue
            name = getattr(reg, "name", type(reg).__name__)
            hint = ("use top_k > 0 (targets computed once, no reference model)" if fsdp2 and name == "kl" else
                    "use FSDP2 (fsdp_version: 2), DDP or DeepSpeed ZeRO-1/2, or train with replay only")
            raise ForgetlessError(f"regularizer '{name}' needs whole weights on each process, but {kind} shards "
                                  "them", hint=hint)

    def _record(self, terms: dict[str, torch.Tensor], report: int) -> None:
        numbers = torch.stack([v.detach().float().reshape(()) for v in terms.values()]).tolist()  # one sync
        values = {k: x / report for k, x in zip(terms, numbers)}
        if not self._sums:
            self._window_start = self.state.global_step
        for key, value in values.items():
            self._sums[key] = self._sums.get(key, 0.0) + value
        if self.guard is not None and self.guard.bad is None and not all(map(math.isfinite, values.values())):
            self.guard.bad = NonFinite(step=self.state.global_step + 1, terms=values)

    def reset_penalty_logs(self) -> None:
        """Forget the terms recorded so far (a step timed before training is not part of any window)."""
        self._sums = {}

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._sums:  # a training log: add each term's window average
            steps = max(1, self.state.global_step - self._window_start)
            for key, total in self._mean_over_processes(self._sums).items():
                logs[key] = round(total / steps, 6)
            self._sums = {}
        super().log(logs, start_time)

    def _mean_over_processes(self, sums: dict[str, float]) -> dict[str, float]:
        """Under DDP each process saw its own shard of the batch: average, as the Trainer does for `loss`.

        Every process logs at the same steps (the Trainer gathers `loss` there too), so this collective
        cannot hang.
        """
        if self.accelerator.num_processes == 1:
            return sums
        values = torch.tensor(list(sums.values()), dtype=torch.float64, device=self.accelerator.device)
        return dict(zip(sums, self.accelerator.reduce(values, reduction="mean").tolist()))


class ForgetlessTrainer(PenaltyTrainerMixin, Trainer):
    """The HF `Trainer` with regularizer penalties (see `PenaltyTrainerMixin`).

    Its task loss computes logits only at the scored positions (`forgetless.train.scored`), when the
    model has an output embedding and every penalty can read such outputs; else the Trainer's own.
    """

    def __init__(self, *args: Any, in_order: bool = False, **kwargs: Any):
        """`in_order`: the training stream is already shuffled pass by pass (`recipe.build_data`); read it so."""
        super().__init__(*args, **kwargs)
        from forgetless.train.scored import output_head

        self.in_order = in_order
        # one process only: a DDP wrapper hides the output head, and the prefix would take a second forward
        self.scored_only = self.accelerator.num_processes == 1 and output_head(self.model) is not None and all(
            getattr(reg, "reads_scored_logits", False) for _, reg in self.regularizers)

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        if self.in_order:
            return torch.utils.data.SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)
        return super()._get_train_sampler(train_dataset)

    def task_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool,
                  num_items_in_batch: Any) -> tuple[torch.Tensor, Any, bool]:
        if not self.scored_only or "labels" not in inputs:
            return super().task_loss(model, inputs, return_outputs, num_items_in_batch)
        from forgetless.train.scored import scored_cross_entropy, scored_forward

        outputs = scored_forward(model, inputs)
        loss = scored_cross_entropy(outputs, inputs["labels"], num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss: DDP averages the gradients
        return loss, outputs, True
