"""What the command-line entry points share: user errors end in one line and exit status 2.

A config, checkpoint, data, preflight, full-disk or busy-folder problem is the user's to fix, and a
traceback only hides the one sentence that says how; ``MJEXP_DEBUG=1`` shows the traceback anyway.
Inside a Hydra multirun the error is re-raised instead: exiting would end the whole sweep, while a raised
error fails only this job (Hydra records it, the other jobs run, the sweep summary names it).

A stop signal (SIGTERM, SIGINT, SLURM's SIGUSR1/2) ends the command, sweep included, with exit
status 128 + the signal number after the run saved what it can (:mod:`mjexp.runs.signals`).
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from evaluation.preflight import PreflightError
from mjexp.config import ConfigError
from mjexp.diffusion.training_module import NonFiniteLossError
from mjexp.files.checkpoints import CheckpointError
from mjexp.files.disk import DiskFullError
from mjexp.files.lock import RunFolderInUse
from mjexp.runs import signals
from mjexp.runs.log_noise import quiet_third_party_logs

F = TypeVar("F", bound=Callable[..., Any])


# What a user can fix: one line, exit 2 (ConfigError and DataTooSmallError are ValueErrors).
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, FileNotFoundError, CheckpointError, PreflightError, NonFiniteLossError, DiskFullError, RunFolderInUse,
)


def in_multirun() -> bool:
    """True inside a job of ``-m`` / ``--multirun``."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def reports_user_errors(task: F) -> F:
    """Wrap a Hydra task function: known user errors -> ``error: <message>`` on stderr, exit 2;
    stop signals -> exit 128 + signal; third-party log noise filtered (:mod:`mjexp.runs.log_noise`)."""

    @functools.wraps(task)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        quiet_third_party_logs()
        try:
            with signals.handling_stop_signals():
                return task(*args, **kwargs)
        except signals.Interrupted as stop:
            signals.exit_for(stop)
        except USER_ERRORS as error:
            if os.environ.get("MJEXP_DEBUG") or in_multirun():
                raise
            if isinstance(error, ConfigError):
                discard_untouched_run_dir()
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def discard_untouched_run_dir() -> None:
    """Remove the run folder Hydra made for a command refused at its config check: it holds only
    Hydra's own files (``.hydra/``, the job log), and a typo should leave nothing behind."""
    if not HydraConfig.initialized():
        return
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if not run_dir.is_dir() or any(p.name != ".hydra" and p.suffix != ".log" for p in run_dir.iterdir()):
        return
    shutil.rmtree(run_dir)
    for parent in run_dir.parents:  # outputs/<name>/ and outputs/ when they held only this run
        if parent == Path.cwd() or not parent.is_relative_to(Path.cwd()) or any(parent.iterdir()):
            break
        parent.rmdir()
