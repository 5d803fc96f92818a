"""Frozen encoders: no gradients, always in eval mode, and an LRU cache of per-prompt embeddings.

Captions repeat many times during diffusion training (the shapes data has ~100 distinct ones), so
re-running a frozen transformer on them every step is wasted work. Only frozen encoders cache:
a trainable encoder's output changes with every optimiser step.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from mjexp.text.base import TextEmbedding, TextEncoder


class FrozenTextEncoder(TextEncoder):
    """Subclasses implement :meth:`_encode` and call :meth:`_freeze` after building their modules."""

    trainable = False

    def __init__(self, cache_size: int = 1024) -> None:
        super().__init__()
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0 (0 disables the cache), got {cache_size}")
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = OrderedDict()
        self.cache_hits = 0  # prompts served from the cache, for logging and tests

    def _encode(self, prompts: list[str]) -> TextEmbedding:  # pragma: no cover - abstract
        raise NotImplementedError

    def _freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FrozenTextEncoder":
        """Stay in eval mode (no dropout) even when a parent module is put in training mode."""
        return super().train(False)

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        # .to() / .half() / .cuda() change what encode returns, so cached rows would be stale.
        self._cache.clear()
        return super()._apply(fn, recurse)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> TextEmbedding:
        """Embeddings of ``prompts``, encoding only those not in the cache (in one batch)."""
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        rows: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        if missing:
            fresh = self._encode(missing)
            # clone: a cached row must not keep its whole batch tensor alive
            rows = {
                p: (fresh.tokens[i].clone(), fresh.mask[i].clone(), fresh.pooled[i].clone())
                for i, p in enumerate(missing)
            }
        self.cache_hits += sum(p not in rows for p in prompts)
        for p in dict.fromkeys(prompts):
            if p not in rows:
                rows[p] = self._cache[p]
                self._cache.move_to_end(p)
        if self.cache_size:
            for p in missing:
                self._cache[p] = rows[p]
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return TextEmbedding(*(torch.stack([rows[p][k] for p in prompts]) for k in range(3)))
