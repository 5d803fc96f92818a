"""One live run per output folder: a second run into a folder in use refuses to start.

Two runs writing one folder interleave checkpoints, journal lines and exports into a result that
neither produced. The lock is an ``flock`` on ``<folder>/run.lock`` held through an open file for
the whole run: the kernel drops it when the process ends, however it ends, so a crash or SIGKILL
never leaves a stale lock behind. The file names the holder for the refusal message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Iterator

LOCK_FILE = "run.lock"


class RunFolderInUse(RuntimeError):
    """The output folder belongs to a run that is still alive; the message names it."""


@contextlib.contextmanager
def run_folder_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock for the duration of the block, or raise :class:`RunFolderInUse`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text(encoding="utf-8").strip() or "a process that has not written its name yet"
            raise RunFolderInUse(
                f"{folder} is in use by a live run ({holder}); wait for it to end, or give this run its own "
                "folder (hydra.run.dir=...)"
            ) from None
        os.ftruncate(fd, 0)
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock
