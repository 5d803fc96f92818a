"""The global random-number generators' states as checkpoint data (tensors, lists and ints only).

Lightning restores weights, optimizer, LR schedule and loop counters, but not the global torch,
CUDA, numpy and Python generators that condition dropout, timesteps and training noise draw from;
a resumed run must continue their streams where the checkpoint left them to match an
uninterrupted run. Checkpoints load with ``torch.load(weights_only=True)``, which accepts
tensors and plain containers but not numpy arrays, so numpy's key array is stored as a tensor.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture() -> dict[str, Any]:
    """This process's generator states (CUDA only where CUDA has been initialised)."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached_gaussian)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict[str, Any]) -> None:
    """Set the generators to a :func:`capture` result."""
    torch.set_rng_state(state["torch"])
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
