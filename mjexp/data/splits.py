"""The four data splits and the two deterministic ways real datasets are cut into them.

- ``train``: what the generator learns from.
- ``judge``: what the evaluation judge (a domain CLIP / attribute classifier) learns from, so the
  judge never saw the generator's training images.
- ``val``: monitoring during training.
- ``test``: reference images for FID/KID and attribute accuracy of real data.
"""

from __future__ import annotations

import hashlib
from typing import Mapping

import numpy as np

SPLITS: tuple[str, ...] = ("train", "judge", "val", "test")


def check_split(split: str) -> str:
    """Return ``split`` or raise naming the allowed splits."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {list(SPLITS)}")
    return split


def split_fractions(
    judge_fraction: float, val_fraction: float, test_fraction: float, key_prefix: str = ""
) -> dict[str, float]:
    """Fractions per split; ``train`` gets the rest, which must be positive. Errors name
    ``<key_prefix><split>_fraction`` (the config key)."""
    held = {"judge": judge_fraction, "val": val_fraction, "test": test_fraction}
    for name, fraction in held.items():
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"{key_prefix}{name}_fraction={fraction} must be in [0, 1)")
    train = 1.0 - sum(held.values())
    if train <= 0.0:
        raise ValueError(
            f"{key_prefix}judge/val/test fractions {held} leave no images for train; their sum must be < 1"
        )
    return {"train": train, **held}


def _bucket(u: np.ndarray, fractions: Mapping[str, float], split: str) -> np.ndarray:
    """Mask of the ``u`` in [0, 1) that fall in ``split``'s interval (splits laid out in SPLITS order)."""
    edges = np.cumsum([0.0] + [fractions[name] for name in SPLITS])
    edges[-1] = 1.0  # guard against the sum rounding below 1
    k = SPLITS.index(check_split(split))
    return (u >= edges[k]) & (u < edges[k + 1])


def permutation_split(n: int, fractions: Mapping[str, float], seed: int, split: str) -> np.ndarray:
    """Indices of ``split`` in a seeded permutation of ``range(n)``: exact sizes, disjoint splits."""
    order = np.random.default_rng(seed).permutation(n)
    u = np.empty(n)
    u[order] = (np.arange(n) + 0.5) / n  # rank of each item, spread over [0, 1)
    return np.flatnonzero(_bucket(u, fractions, split))


def hash_split(keys: list[str], fractions: Mapping[str, float], split: str) -> np.ndarray:
    """Indices of ``split`` by hashing each key (a file name) to [0, 1).

    Adding or removing files never moves the others to another split, and every row of one file
    (several captions per image) lands in the same split, so splits stay disjoint by image.
    """
    digests = [hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest() for key in keys]
    u = np.array([int.from_bytes(d[:8], "big") / 2.0**64 for d in digests], dtype=np.float64)
    return np.flatnonzero(_bucket(u, fractions, split))
