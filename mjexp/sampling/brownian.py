"""Brownian-path step noise: a stochastic sampler at any step count follows the same noise path.

With independent per-step noise, the images of an SDE sampler at 20 and at 250 steps are unrelated
draws even from the same initial noise, so step-count sweeps cannot be compared image by image.
Here each item owns one Brownian motion ``W`` on ``t = (2 / pi) arctan(sigma)`` in ``[0, 1]`` (the
VP angle, so ``sigma = inf`` is ``t = 1``), and the step from ``sigma`` to ``sigma_next`` adds the
normalised increment ``(W(t) - W(t_next)) / sqrt(t - t_next)``:

- increments over disjoint steps are independent standard normals, so every sampler's
  distribution is exactly what it is with independent noise;
- a coarse step's noise is the normalised sum of the noises of the fine steps inside it, so a
  20-step and a 250-step run of the same item see the same path (the role of k-diffusion's
  ``BrownianTreeNoiseSampler``).

``W`` is exact at the times of the lattice ``k / 2**LEVELS`` (every time is rounded to it) and is
built by Levy's midpoint construction along a virtual dyadic tree: ``W(1) ~ N(0, 1)`` and the
midpoint of a dyadic interval ``[a, b]`` is ``(W(a) + W(b)) / 2 + sqrt((b - a) / 4) z``. Each
``z`` comes from a counter-based generator (Philox) keyed by the item's 128-bit key with the
midpoint's lattice index as counter, so ``W(t)`` never depends on which other times are asked for,
in what order, or in which batch.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import torch

LEVELS = 24
_LATTICE = 1 << LEVELS


def lattice_time(sigma: float) -> int:
    """The lattice index of ``t = (2 / pi) arctan(sigma)`` (``sigma = inf`` -> ``2**LEVELS``)."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    t = 1.0 if math.isinf(sigma) else 2.0 / math.pi * math.atan(sigma)
    return round(t * _LATTICE)


class BrownianSteps:
    """Step noise of one batch on one sigma grid: :meth:`step` ``k`` is the noise of the step
    ``sigmas[k] -> sigmas[k + 1]``, a standard normal ``(B, *shape)`` float64 CPU tensor.

    ``keys`` holds one 128-bit Philox key (two uint64 words) per item. Only the value of ``W`` at
    the previous step's end is kept, so memory stays at a few batches of noise; each step walks
    the tree from the root (``LEVELS`` draws per item), chunks of items in parallel threads.
    """

    def __init__(self, keys: Sequence[tuple[int, int]], shape: Sequence[int], sigmas: Sequence[float]) -> None:
        if not keys:
            raise ValueError("BrownianSteps needs at least one item")
        self._generators = [np.random.Generator(np.random.Philox(key=np.array(key, dtype=np.uint64))) for key in keys]
        self._states = [g.bit_generator.state for g in self._generators]
        self._shape = tuple(int(s) for s in shape)
        self._times = [lattice_time(float(s)) for s in sigmas]
        for (a, b), (ta, tb) in zip(zip(sigmas, sigmas[1:]), zip(self._times, self._times[1:])):
            if tb >= ta:
                raise ValueError(
                    f"sigmas {float(a):.9g} -> {float(b):.9g} fall on the same Brownian lattice time "
                    f"(resolution 2**-{LEVELS} of the VP angle) or are not decreasing; use "
                    "sampler.noise=independent for this grid"
                )
        self._last: tuple[int, np.ndarray] | None = None

    def step(self, k: int) -> torch.Tensor:
        if not 0 <= k < len(self._times) - 1:
            raise ValueError(f"step index {k} outside the grid's {len(self._times) - 1} steps")
        start, end = self._times[k], self._times[k + 1]
        increment = self._value(start) - self._value(end)
        return torch.from_numpy(increment / math.sqrt((start - end) / _LATTICE))

    def _value(self, time: int) -> np.ndarray:
        """``W`` at lattice ``time`` for every item, (B, *shape) float64. Items are split into
        contiguous chunks walked in parallel threads (NumPy draws and arithmetic release the GIL);
        each item's values do not depend on the chunking."""
        if self._last is not None and self._last[0] == time:
            return self._last[1]
        value = np.empty((len(self._generators), *self._shape))
        chunks = _chunks(len(self._generators), _workers())
        if len(chunks) == 1:
            self._walk(chunks[0], time, value)
        else:
            list(_pool().map(lambda items: self._walk(items, time, value), chunks))
        self._last = (time, value)
        return value

    def _walk(self, items: range, time: int, out: np.ndarray) -> None:
        """Levy's construction from the root down to ``time`` for ``items``, into ``out[items]``."""
        lo, hi = 0, _LATTICE
        w_lo, w_hi = np.zeros((len(items), *self._shape)), self._normals(items, _LATTICE)
        while time not in (lo, hi):
            mid = (lo + hi) // 2
            w_mid = (w_lo + w_hi) / 2 + math.sqrt((hi - lo) / _LATTICE / 4) * self._normals(items, mid)
            if time < mid:
                hi, w_hi = mid, w_mid
            else:
                lo, w_lo = mid, w_mid
        out[items.start : items.stop] = w_lo if time == lo else w_hi

    def _normals(self, items: range, node: int) -> np.ndarray:
        """Each item's standard normal for tree ``node`` (a lattice index; ``2**LEVELS`` is ``W(1)``).
        The node sits in the counter's top word, so no two nodes' draws can overlap; setting the
        full state (empty buffer) makes a draw independent of what the generator did before."""
        rows = []
        for index in items:
            generator, state = self._generators[index], self._states[index]
            state["state"]["counter"] = np.array([0, 0, 0, node], dtype=np.uint64)
            generator.bit_generator.state = state
            rows.append(generator.standard_normal(self._shape))
        return np.stack(rows)


def _chunks(count: int, parts: int) -> list[range]:
    """``range(count)`` cut into at most ``parts`` contiguous, near-equal, non-empty pieces."""
    parts = max(1, min(count, parts))
    bounds = [count * p // parts for p in range(parts + 1)]
    return [range(a, b) for a, b in zip(bounds, bounds[1:])]


def _workers() -> int:
    """As many threads as torch uses for its own CPU work (the draw and the network alternate)."""
    return max(1, torch.get_num_threads())


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor:
    """One process-wide pool of :func:`_workers` threads, replaced when torch's thread count changes."""
    global _POOL
    if _POOL is None or _POOL[0] != _workers():
        if _POOL is not None:
            _POOL[1].shutdown(wait=False)
        _POOL = (_workers(), ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix="mjexp-brownian"))
    return _POOL[1]
