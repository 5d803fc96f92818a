"""Weight files: content hashes and the safety check before a third-party loader unpickles them.

torch-fidelity loads Inception weights with ``torch.load(weights_only=False)`` and CLIP weights
with ``torch.jit.load``; both can execute code from the file. So a file is handed to them only
after ``torch.load(weights_only=True)`` accepted it (a plain state dict) or its SHA-256 matched a
published hash.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch


class MissingWeightsError(FileNotFoundError):
    """A model the evaluation needs is not on this machine (and downloading is not allowed)."""


class UnsafeWeightsError(ValueError):
    """A weight file failed the safety check (not a plain state dict, or a hash mismatch)."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_state_dict_file(path: str | Path) -> str:
    """Load ``path`` with ``weights_only=True``; return its SHA-256 if it is a dict of tensors.

    Raises UnsafeWeightsError if the file needs arbitrary unpickling or is not a state dict.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError or RuntimeError depending on the file
        raise UnsafeWeightsError(
            f"{path} is not loadable with torch.load(weights_only=True) ({type(error).__name__}: {error}); "
            "refusing to hand it to a loader that unpickles arbitrary objects"
        ) from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UnsafeWeightsError(f"{path} does not hold a state dict (a dict of tensors)")
    return sha256_file(path)


def check_known_hash(path: str | Path, expected_sha256: str) -> str:
    """Return the file's SHA-256 if it starts with ``expected_sha256`` (a full hash or a prefix)."""
    actual = sha256_file(path)
    if not actual.startswith(expected_sha256.lower()):
        raise UnsafeWeightsError(
            f"{path} has SHA-256 {actual}, expected {expected_sha256}; refusing to load a file whose "
            "content is not the published one"
        )
    return actual


def hub_checkpoint(filename: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` caches ``filename``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename
