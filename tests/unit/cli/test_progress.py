"""Training progress in steps of max_steps: a line every N steps in a log file (SLURM, nohup)."""

from __future__ import annotations

import io
from types import SimpleNamespace

import torch

from mjexp.runs.progress import TrainingProgress, format_duration


def test_durations_read_like_a_clock() -> None:
    assert [format_duration(s) for s in (7.2, 65, 3725)] == ["7s", "1m05s", "1h02m05s"]


def test_a_log_file_gets_a_line_every_n_steps_and_at_the_last() -> None:
    log = io.StringIO()  # not a terminal
    progress = TrainingProgress(every_n_steps=2, stream=log)
    trainer = SimpleNamespace(is_global_zero=True, global_step=0, max_steps=5, callback_metrics={})
    progress.on_train_start(trainer, None)
    for step in range(1, 6):
        trainer.global_step = step
        trainer.callback_metrics = {"train/loss": torch.tensor(1.0 / step)}
        progress.on_train_batch_end(trainer, None, None, None, step - 1)
    lines = log.getvalue().splitlines()
    assert [line.split("  ")[0] for line in lines] == ["step 2/5 (40%)", "step 4/5 (80%)", "step 5/5 (100%)"]
    assert "loss 0.5000" in lines[0] and "steps/s" in lines[0] and "ETA" in lines[0]


def test_a_resumed_run_counts_its_speed_from_where_it_resumed() -> None:
    progress = TrainingProgress(every_n_steps=1, stream=io.StringIO())
    progress._start = (100, 10.0)  # resumed at step 100, 10 s into the process clock
    assert progress.line(150, 200, 0.25, 20.0) == "step 150/200 (75%)  loss 0.2500  5.00 steps/s  ETA 10s"
