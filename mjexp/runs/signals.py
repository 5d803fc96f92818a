"""Stopping on SIGTERM, SIGINT and SLURM's warning signals at a point a run can continue from.

Schedulers ask a job to stop with SIGTERM (SLURM at the time limit or on ``scancel``, Kubernetes,
``timeout``), a user with SIGINT (Ctrl+C); both kill the process a grace period later. SLURM can
also warn ahead of a time limit or pre-emption with ``sbatch --signal=USR1@90`` (submitit sends
SIGUSR2). While :func:`handling_stop_signals` is active these signals never end the process
where they land:

* inside :func:`deferred` (a training's fit loop, a generation's predict loop) the signal is only
  recorded; the loop checks :func:`requested` at its next batch end, writes what it has (a
  checkpoint at the current step; the batch's images and manifest rows) and raises
  :class:`Interrupted`;
* anywhere else (building, scoring, exporting) :class:`Interrupted` is raised at once, as Ctrl+C
  raises KeyboardInterrupt; a second signal always does.

The entry point marks the run KILLED and exits with 128 + the signal number, so a scheduler sees a
stopped job, not a finished one. After SIGUSR1/SIGUSR2 inside a SLURM job it first requeues the job
(``scontrol requeue``); the requeued job resumes from its own output folder.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from types import FrameType
from typing import Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
# Sent ahead of a SLURM time limit or pre-emption (``--signal``); the job is requeued after stopping.
REQUEUE_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


class Interrupted(BaseException):
    """A run stopped by a signal. A BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` (e.g. tracking's "never kill the run") swallows it."""

    def __init__(self, signum: int, detail: str = "") -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}" + (f" {detail}" if detail else ""))

    @property
    def exit_code(self) -> int:
        """What a shell reports for a process ended by the signal: 128 + its number."""
        return 128 + self.signum


class _State:
    active = False  # inside handling_stop_signals()
    signum: int | None = None  # the first stop signal received
    deferring = 0  # depth of deferred() blocks


def _handle(signum: int, frame: FrameType | None) -> None:
    first = _State.signum is None
    if first:
        _State.signum = signum
    if first and _State.deferring:
        # os.write, not print: the handler may run while the main thread is inside a print.
        os.write(2, (f"\n{signal.Signals(signum).name} received: stopping at the next point this run can "
                     "resume from (send it again to stop at once)\n").encode())
        return
    raise Interrupted(signum)


def requested() -> int | None:
    """The stop signal received so far (its number), else None."""
    return _State.signum


def take_over() -> None:
    """Reinstall the handlers (while :func:`handling_stop_signals` is active): Lightning installs its
    own SIGTERM handler at the start of each fit, which would end the loop where no checkpoint is
    written."""
    if _State.active:
        _install()


def _install() -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, _handle)


@contextlib.contextmanager
def handling_stop_signals() -> Iterator[None]:
    """Handle the stop signals (main thread only) for the duration of a command; restores the
    previous handlers after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    _State.active, _State.signum, _State.deferring = True, None, 0
    _install()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _State.active, _State.signum, _State.deferring = False, None, 0


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A stretch of work that checks :func:`requested` itself at points it can stop at."""
    _State.deferring += 1
    try:
        yield
    finally:
        _State.deferring -= 1
    if _State.signum is not None:  # asked to stop after the last check
        raise Interrupted(_State.signum)


def final_status(error: BaseException) -> str:
    """The MLflow status of a run ended by ``error``: KILLED when a user or scheduler stopped it."""
    return "KILLED" if isinstance(error, (Interrupted, KeyboardInterrupt)) or _State.signum is not None else "FAILED"


def slurm_job_id() -> str | None:
    """This SLURM job's id as ``scontrol`` takes it (``<array job>_<task>`` in a job array)."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def requeued_slurm_job() -> bool:
    """True in a SLURM job that was requeued (it runs the same command again)."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


def requeue_slurm_job() -> None:
    """Put this SLURM job back in the queue (its first task only); says what happened on stderr."""
    job = slurm_job_id()
    if job is None or os.environ.get("SLURM_PROCID", "0") != "0":
        if job is None:
            print("not in a SLURM job: nothing to requeue", file=sys.stderr)
        return
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        print(f"could not requeue SLURM job {job}: {error}", file=sys.stderr)
        return
    if done.returncode == 0:
        print(f"requeued SLURM job {job}: it resumes from its checkpoint when it runs again", file=sys.stderr)
    else:
        print(f"scontrol requeue {job} failed ({done.returncode}): {done.stderr.strip()}", file=sys.stderr)


def exit_for(stop: Interrupted) -> None:
    """End the command after ``stop``: requeue on SLURM's warning signal, exit 128 + signal."""
    print(f"{stop}", file=sys.stderr)
    if stop.signum in REQUEUE_SIGNALS:
        requeue_slurm_job()
    sys.exit(stop.exit_code)
