"""A Hydra callback that makes a multirun report failed jobs instead of hiding them.

Registered in ``conf/train.yaml`` (``hydra/callbacks: sweep_report``). What it adds to Hydra:

* every job's outcome goes to ``<sweep dir>/jobs.jsonl`` (written where the job ran, so it works
  with the basic, joblib and submitit launchers);
* a job that failed before opening its MLflow run (an invalid config, a missing checkpoint) still
  gets a FAILED run with its error, so the experiment in MLflow lists every arm that was asked for;
* a summary of which jobs failed and why is printed at the end; a job that a stop signal ended
  (which ends the sweep) is listed as KILLED.

Hydra's basic sweeper runs every job of a batch, then re-raises the first failure (exit status
1) and never calls ``on_multirun_end``; the summary is therefore printed at interpreter exit in
that case, and from ``on_multirun_end`` when nothing was raised.
"""

from __future__ import annotations

import atexit
import sys
import warnings
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from mjexp.runs.run_info import read_run_id
from mjexp.runs.tracker import open_tracker
from sweeps.jobs import (
    JobRecord,
    append_record,
    describe_error,
    read_records,
    start_log,
    summary,
)


class SweepFailed(CompactHydraException):
    """Raised from ``on_multirun_end`` when a sweeper finished although some jobs failed.

    Compact: Hydra prints its message without a traceback (the summary says the rest).
    """


class SweepReport(Callback):
    """Record each multirun job's outcome; print a summary of failed jobs; see the module doc."""

    def __init__(self) -> None:
        self.sweep_dir: Path | None = None
        self.running: JobRecord | None = None  # this process's job that has not ended (yet)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Absolute, and kept on this object: launchers hand it to every job (pickled for joblib
        # and submitit), whose own hydra.sweep.dir differs when the sweep changes ``name``.
        self.sweep_dir = Path(config.hydra.sweep.dir).resolve()
        start_log(self.sweep_dir)
        atexit.register(self._print_summary)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        # What the summary says of this job if on_job_end never comes: a stop signal (SIGTERM,
        # Ctrl+C) ends the job and the sweep with it, past Hydra's bookkeeping.
        self.running = JobRecord(
            num=int(config.hydra.job.num),
            overrides=list(config.hydra.overrides.task),
            status="KILLED",
            output_dir=str(config.hydra.runtime.output_dir),
            error="stopped before it finished (by a signal); rerun the sweep with ckpt_path=last to continue",
        )

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        self.running = None
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        output_dir = Path(config.hydra.runtime.output_dir)
        failed = job_return.status != JobStatus.COMPLETED
        # ``return_value`` re-raises a failed job's exception; the stored value is what we need.
        error = describe_error(job_return._return_value) if failed else None
        run_id = mlflow_run_id(output_dir)
        if failed and run_id is None:
            run_id = log_failed_run(config, output_dir, error or "unknown error")
        record = JobRecord(
            num=int(config.hydra.job.num),
            overrides=list(config.hydra.overrides.task),
            status="COMPLETED" if not failed else "FAILED",
            output_dir=str(output_dir),
            error=error,
            mlflow_run_id=run_id,
        )
        append_record(self.sweep_dir or Path(config.hydra.sweep.dir), record)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        atexit.unregister(self._print_summary)
        failed = self._print_summary()
        if failed:
            raise SweepFailed(f"{failed} job(s) of the sweep failed (see the summary above)")

    def _print_summary(self) -> int:
        """Print the summary; returns the number of failed jobs."""
        if self.sweep_dir is None:
            return 0
        if self.running is not None:
            append_record(self.sweep_dir, self.running)
            self.running = None
        records = read_records(self.sweep_dir)
        print(summary(records, self.sweep_dir), file=sys.stderr if any(r.failed for r in records) else sys.stdout)
        return sum(r.failed for r in records)


def mlflow_run_id(output_dir: Path) -> str | None:
    """The MLflow run a training job opened (``run.json``), if it got that far."""
    return read_run_id(output_dir)


def log_failed_run(config: DictConfig, output_dir: Path, error: str) -> str | None:
    """Open and close a FAILED MLflow run (tags and error) for a job that failed before its own."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        tracker = open_tracker(config, output_dir, None)
        tracker.finish("FAILED", error=error)
    except Exception as problem:  # noqa: BLE001 - the summary must still be written
        warnings.warn(f"could not log the failed job in {output_dir} to MLflow: {problem}", stacklevel=2)
        return None
    return tracker.run_id
