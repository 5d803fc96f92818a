"""Lightning's MLflow logger, routed through :class:`~mjexp.tracking.mlflow.Tracker`.

Lightning's ``MLFlowLogger`` has no error handling: a tracking-server blip raises inside the
training loop. This subclass keeps its interface (``run_id``, ``experiment``) but sends every
metric through the journaled, failure-tolerant tracker.
"""

from __future__ import annotations

from typing import Any, Mapping

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from mjexp.tracking.mlflow import Tracker


class SafeMLFlowLogger(MLFlowLogger):
    """An ``MLFlowLogger`` attached to a tracker's run that never raises on tracking errors."""

    def __init__(self, tracker: Tracker) -> None:
        super().__init__(
            experiment_name=tracker.experiment,
            tracking_uri=tracker.tracking_uri,
            run_id=tracker.run_id,
            log_model=False,
        )
        self.tracker = tracker

    @property
    def experiment(self) -> Any:
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
        self.tracker.log_metrics({k: float(v) for k, v in metrics.items() if k != "epoch"}, step)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        # The entry point closes the run (training may be followed by evaluation in the same run).
        return None

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        return None
