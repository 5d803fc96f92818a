"""A Lightning logger that sends through :class:`~mjexp.tracking.mlflow.Tracker`.

Lightning's ``MLFlowLogger`` has no error handling: a tracking-server blip raises inside the
training loop, and its constructor opens the store itself (creating a SQLite database even when
tracking is disabled, and raising when the store cannot be opened). This logger opens nothing:
every metric goes through the journaled, failure-tolerant tracker, which owns the MLflow run.
"""

from __future__ import annotations

from typing import Any, Mapping

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from mjexp.tracking.mlflow import Tracker


class SafeMLFlowLogger(Logger):
    """Logs a training's metrics to a tracker's MLflow run; never raises on tracking errors."""

    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        self.tracker = tracker
        self._last_sent: tuple[int | None, dict[str, str]] | None = None
        self.validation_step: int | None = None  # set by ValidationAtItsStep while a validation runs

    @property
    def name(self) -> str:
        return self.tracker.experiment

    @property
    def version(self) -> str | None:
        return self.tracker.run_id

    @property
    def experiment(self) -> Any:
        """The MLflow client (None while MLflow is unreachable)."""
        return self.tracker.client

    @property
    def run_id(self) -> str | None:
        return self.tracker.run_id

    @property
    def experiment_id(self) -> str | None:
        return self.tracker.experiment_id

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        # The resolved config is logged once by the entry point; Lightning's own hparams add nothing.
        return None

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        values = {k: float(v) for k, v in metrics.items() if k != "epoch"}
        step = self.validation_step if self.validation_step is not None else step
        # A step's metrics are sent ahead of its checkpoint (mjexp.runs.checkpointing); Lightning
        # sends the same values again after it. (Compared as text: NaN, a skipped step's loss, != NaN.)
        sent = (step, {k: repr(v) for k, v in values.items()})
        if sent == self._last_sent:
            return
        self._last_sent = sent
        self.tracker.log_metrics(values, step)


class ValidationAtItsStep(Callback):
    """Logs a validation at the step of the weights it measured. Inside fit, Lightning logs it at
    the count of optimizer steps *before* the one just taken, one step behind ``train/loss``."""

    def __init__(self, logger: SafeMLFlowLogger) -> None:
        self.logger = logger

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self.logger.validation_step = trainer.global_step

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        self.logger.validation_step = None
