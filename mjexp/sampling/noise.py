"""Per-item matched noise: an image's noise depends on who it is, never on the batch it is in.

Item ``(i, j)`` (prompt index ``i``, sample index ``j``) of a run with seed ``s`` draws every random
number it will ever need from its own generators, seeded by ``(s, i, j, stage, slot)``:

- ``slot 0``: the initial noise (for the hires stage: the re-noising noise);
- ``slot k + 1``: the fresh noise that step ``k`` of an ancestral sampler adds (with
  ``sampler.noise=independent``; with ``brownian`` the step noise comes from the item's Brownian
  path instead, :mod:`mjexp.sampling.brownian`, keyed by :func:`brownian_key`).

Consequences (tested): the same item gets bitwise the same noise in any batch size, order or
process shard; two ablation arms see the same initial noise image by image, and the same per-step
noise whenever their step counts are equal. Stages (0 = base, 1 = hires) have separate streams.

Noise is drawn on the CPU (so it is identical on every device type) and moved to ``device`` once
per call; to a CUDA device through pinned memory without blocking, so drawing step noise never
stalls the sampling loop on the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Literal, Sequence

import numpy as np
import torch

from mjexp.sampling.brownian import BrownianSteps

StepNoise = Literal["independent", "brownian"]
STEP_NOISE: tuple[str, ...] = ("independent", "brownian")


def item_seed(seed: int, prompt_index: int, sample_index: int, stage: int, slot: int) -> int:
    """A 64-bit seed for one stream; NumPy's SeedSequence hashes the tuple so that nearby tuples give
    statistically independent streams (plain arithmetic like ``seed + i`` would make runs overlap).

    Known limit, kept so that every recorded image stays reproducible: torch's CPU generator keeps
    only the low 32 bits of a seed, so among ``N`` streams about ``N**2 / 2**33`` pairs coincide
    (0.003 pairs for the initial noise of 5,000 images, 0.3 for 50,000; per-step streams of a
    1,000-image, 250-step ancestral run: about 7 of its 250,000 draws). Brownian step noise uses
    128-bit keys and has no such collisions."""
    words = np.random.SeedSequence([seed, prompt_index, sample_index, stage, slot]).generate_state(2)
    return int(words[0]) | (int(words[1]) << 32)


def brownian_key(seed: int, prompt_index: int, sample_index: int, stage: int) -> tuple[int, int]:
    """The 128-bit Philox key of an item's Brownian path. A 6-word entropy, so it is never one of
    :func:`item_seed`'s 5-word streams; 128 bits, so distinct items' paths never collide."""
    words = np.random.SeedSequence([seed, prompt_index, sample_index, stage, 0, 1]).generate_state(2, np.uint64)
    return int(words[0]), int(words[1])


@dataclass(frozen=True)
class ItemNoise:
    """The noise source for one batch of items.

    ``items`` lists ``(prompt_index, sample_index)`` per batch row; ``shape`` is one item's shape
    (C, H, W).
    """

    seed: int
    items: tuple[tuple[int, int], ...]
    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32
    device: torch.device | str = "cpu"
    stage: int = 0

    def __post_init__(self) -> None:
        items = tuple((int(i), int(j)) for i, j in self.items)
        if not items:
            raise ValueError("ItemNoise needs at least one item")
        if self.seed < 0 or self.stage < 0 or any(i < 0 or j < 0 for i, j in items):
            raise ValueError(
                f"seed, stage and item indices must be >= 0; got seed={self.seed}, stage={self.stage}, "
                f"items={items[:4]}..."
            )
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    @classmethod
    def for_prompts(
        cls,
        seed: int,
        prompt_indices: Sequence[int],
        samples_per_prompt: int,
        shape: Sequence[int],
        **kwargs: object,
    ) -> "ItemNoise":
        """Rows ``(i, 0), (i, 1), ..., (i, n-1)`` for each prompt index ``i`` in order."""
        items = tuple((i, j) for i in prompt_indices for j in range(samples_per_prompt))
        return cls(seed, items, tuple(shape), **kwargs)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.items)

    def initial(self) -> torch.Tensor:
        """Standard normal (B, *shape): the initial noise (base stage) or re-noising noise (hires)."""
        return self._draw(0)

    def step(self, k: int) -> torch.Tensor:
        """Standard normal (B, *shape) that ancestral step ``k`` (0-based) of this stage adds."""
        if k < 0:
            raise ValueError(f"step index must be >= 0, got {k}")
        return self._draw(k + 1)

    def steps(self, sigmas: Sequence[float], kind: StepNoise = "independent") -> Callable[[int], torch.Tensor]:
        """Step noise for a sampler walking ``sigmas``: :meth:`step` (``independent``) or the
        increments of each item's Brownian path over the grid's steps (``brownian``)."""
        if kind == "independent":
            return self.step
        if kind != "brownian":
            raise ValueError(f"unknown step noise {kind!r}; choose {' or '.join(STEP_NOISE)}")
        keys = [brownian_key(self.seed, i, j, self.stage) for i, j in self.items]
        path = BrownianSteps(keys, self.shape, [float(s) for s in sigmas])
        return lambda k: self._place(path.step(k))

    def at_stage(self, stage: int, shape: Sequence[int]) -> "ItemNoise":
        """The same items' streams for another stage (e.g. the hires pass at a larger ``shape``)."""
        return replace(self, stage=stage, shape=tuple(shape))

    def _draw(self, slot: int) -> torch.Tensor:
        rows = []
        for i, j in self.items:
            gen = torch.Generator(device="cpu").manual_seed(item_seed(self.seed, i, j, self.stage, slot))
            rows.append(torch.randn(self.shape, generator=gen, dtype=self.dtype))
        return self._place(torch.stack(rows))

    def _place(self, noise: torch.Tensor) -> torch.Tensor:
        """CPU noise in this source's dtype on its device (pinned and non-blocking to CUDA)."""
        noise = noise.to(self.dtype)
        if torch.device(self.device).type == "cuda":
            return noise.pin_memory().to(self.device, non_blocking=True)
        return noise.to(self.device)
