"""Training progress in steps of ``trainer.max_steps``, on a terminal and in a log file alike.

Lightning's own bar counts epochs, which mean nothing in a step-budgeted run ("Epoch 30/-2"), and
draws nothing useful when stdout is a file (SLURM, ``nohup``, CI). This callback shows one bar
over the whole run on a terminal, and elsewhere prints one line every ``every_n_steps`` steps with
the step, the loss, the speed and the time left.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import lightning as L


def format_duration(seconds: float) -> str:
    """``3725`` -> ``1h02m05s``; ``65`` -> ``1m05s``; ``7.2`` -> ``7s``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class TrainingProgress(L.Callback):
    """Progress over ``trainer.max_steps``: a live bar on a terminal, else a line every
    ``every_n_steps`` steps (and at the last)."""

    def __init__(self, every_n_steps: int, stream: TextIO | None = None) -> None:
        self.every_n_steps = max(1, every_n_steps)
        self.stream = stream
        self._start: tuple[int, float] | None = None
        self._bar: Any = None
        self._task: Any = None

    @property
    def out(self) -> TextIO:
        return self.stream or sys.stdout

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self._start = (trainer.global_step, time.perf_counter())
        if self.out.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(), transient=False,
            )
            self._task = self._bar.add_task("train", total=trainer.max_steps, completed=trainer.global_step, info="")
            self._bar.start()

    def line(self, step: int, total: int, loss: float | None, now: float) -> str:
        """``step 250/1800 (14%)  loss 0.1234  5.60 steps/s  ETA 4m37s``."""
        first_step, first_time = self._start or (0, now)
        rate = (step - first_step) / (now - first_time) if now > first_time and step > first_step else 0.0
        parts = [f"step {step}/{total} ({100 * step / total:.0f}%)"]
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if rate > 0:
            parts += [f"{rate:.2f} steps/s", f"ETA {format_duration((total - step) / rate)}"]
        return "  ".join(parts)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not trainer.is_global_zero or self._start is None:
            return
        step, total = trainer.global_step, trainer.max_steps
        value = trainer.callback_metrics.get("train/loss")
        loss = float(value) if value is not None else None
        if self._bar is not None:
            self._bar.update(self._task, completed=step, info="" if loss is None else f"loss {loss:.4f}")
        elif step % self.every_n_steps == 0 or step == total:
            print(self.line(step, total, loss, time.perf_counter()), file=self.out, flush=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.on_train_end(trainer, pl_module)  # a crashed run leaves the terminal usable


class ValidationSteps(L.Callback):
    """The global steps at which validation ran (the same on every process), so a training can
    validate once more at its end when the last scheduled validation fell before it."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.steps.append(trainer.global_step)
