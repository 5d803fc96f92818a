"""One clear error when a disk fills up: which file could not be written, and how much space is left.

A full disk surfaces as ``OSError: [Errno 28] No space left on device`` without the file, from
torch.save as ``RuntimeError: [enforce fail at inline_container.cc:...] . unexpected pos ...`` (or
``... file write failed``) and from safetensors as ``SafetensorError: ... (os error 28)``, with
neither; :func:`names_full_disk` turns each into a :class:`DiskFullError` that names the file, the
free space and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import Iterator

# How libraries that wrap the OS error report it: torch's zip writer (PyTorchStreamWriter) when a
# write comes back short, and the OS's own words inside safetensors' error.
FULL_DISK_TEXTS = ("unexpected pos", "file write failed", "No space left on device", "Disk quota exceeded")


class DiskFullError(OSError):
    """A file could not be written because its disk (or quota) is full; the message says where."""


def is_disk_full(error: BaseException) -> bool:
    """An ENOSPC/EDQUOT OSError, or a library's report of one (see :data:`FULL_DISK_TEXTS`)."""
    if isinstance(error, OSError) and error.errno is not None:
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(error, Exception) and any(text in str(error) for text in FULL_DISK_TEXTS)


def free_space(path: str | Path) -> str:
    """``"12.3 MiB free of 1.0 GiB"`` for the filesystem holding ``path`` (or its nearest existing folder)."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    usage = shutil.disk_usage(folder)
    return f"{_size(usage.free)} free of {_size(usage.total)}"


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


@contextlib.contextmanager
def names_full_disk(path: str | Path, then: str = "free space, then run the same command again") -> Iterator[None]:
    """Re-raise a full-disk failure while writing ``path`` as a :class:`DiskFullError`."""
    try:
        yield
    except Exception as error:
        if isinstance(error, DiskFullError) or not is_disk_full(error):
            raise
        raise DiskFullError(
            f"no space left to write {path} ({free_space(path)} on that filesystem; {type(error).__name__}: "
            f"{str(error).splitlines()[0][:200]}): {then}"
        ) from error


def append_durably(path: str | Path, data: bytes) -> None:
    """Append ``data`` to ``path`` and fsync; a failed append (a full disk) is cut back, so the
    file never ends in part of a line that the next append would run into."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        end = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, end)
            raise
    finally:
        os.close(fd)
