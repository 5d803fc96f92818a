"""Safe, atomic checkpoint files.

- Loading always uses ``torch.load(weights_only=True)``: a checkpoint is data, never code.
- Saving writes a temporary file next to the target, fsyncs it and renames it over the target,
  so a crash mid-save leaves the previous checkpoint intact, never a truncated one. A full disk is
  one :class:`~mjexp.files.disk.DiskFullError` naming the file and the space left.
- A checkpoint that cannot be read (zero bytes, truncated, corrupted, or a pickle that asks to
  run code) raises :class:`CheckpointError` naming the file; so does a safetensors file that is
  truncated or whose header does not fit the file (:func:`load_safetensors`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from safetensors.torch import load_file

from mjexp.files.disk import names_full_disk

RESUME_HINT = "free space, then resume with ckpt_path=last"
# The temporary files of atomic_write (".<name>.<random>.tmp"); one left by a killed process is debris.
TEMP_FILE_PATTERN = ".*.*.tmp"


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used; the message names it and why."""


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` on a temp file in the target's folder, fsync, then rename onto ``path``
    (training outputs: a full disk is resumed from, after freeing space, with ``ckpt_path=last``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with names_full_disk(path, RESUME_HINT):
            write(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        tmp.unlink(missing_ok=True)


def load_torch_file(path: str | Path, map_location: Any = "cpu", mmap: bool = False) -> Any:
    """``torch.load(weights_only=True)`` with one clear error for every way a file can be bad
    (``mmap``: tensors are mapped, not read, e.g. to look at a checkpoint's step)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); it was probably cut off while being written")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as error:  # noqa: BLE001 - every failure becomes one message naming the file
        text = str(error)
        if "Weights only load failed" in text or "Unsupported global" in text or "Unsupported operand" in text:
            reason = "it contains pickled code or objects, which are never executed (weights_only=True)"
        else:
            reason = f"it is truncated or corrupted ({type(error).__name__}: {text.splitlines()[0][:200]})"
        raise CheckpointError(f"cannot load checkpoint {path}: {reason}") from None


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """``safetensors.torch.load_file`` whose every failure (a cut-off file, a header claiming more
    data than the file holds) is one :class:`CheckpointError` naming the file."""
    path = Path(path)
    try:
        return load_file(str(path))
    except Exception as error:  # noqa: BLE001 - safetensors raises its own (Rust) error types
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise CheckpointError(
            f"cannot load weights {path}: it is truncated or corrupted ({reason}); export or download it again"
        ) from None


def state_mismatch(own: Mapping[str, torch.Tensor], loaded: Mapping[str, Any], show: int = 5) -> list[str]:
    """What keeps ``loaded`` from fitting a module whose state is ``own``: missing, unexpected and
    mis-shaped keys (the first ``show`` of each); empty when it fits."""

    def listed(keys: list[str]) -> str:
        return f"{keys[:show]}{' ...' if len(keys) > show else ''}"

    missing = sorted(set(own) - set(loaded))
    unexpected = sorted(set(loaded) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(loaded[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in loaded and tuple(loaded[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {listed(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches {listed(shapes)}")
    return problems


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO: atomic saves and ``weights_only=True`` loads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))

    def load_checkpoint(
        self, path: Any, map_location: Optional[Any] = "cpu", weights_only: Optional[bool] = True
    ) -> dict[str, Any]:
        return load_torch_file(path, map_location=map_location)
