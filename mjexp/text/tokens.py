"""Fixed-length tokenisation with one truncation warning, shared by the open_clip-tokenised encoders.

Every encoder pads to its full context so that embeddings of different batches (cond and the null
prompt for CFG) concatenate; a prompt is "too long" when it still has a token at position
``context_length`` of a one-longer tokenisation.
"""

from __future__ import annotations

from typing import Callable

import torch

from mjexp.text.base import warn_truncated

Tokenizer = Callable[..., torch.Tensor]  # open_clip tokenizer: (texts, context_length=) -> (B, L) ids


def tokenize_checked(
    tokenizer: Tokenizer, prompts: list[str], context_length: int, pad_id: int, encoder: str
) -> torch.Tensor:
    """Token ids (B, ``context_length``) truncated the tokenizer's own way, warning when that cut a prompt."""
    longer = tokenizer(prompts, context_length=context_length + 1)
    warn_truncated(prompts, (longer != pad_id).sum(dim=1).tolist(), context_length, encoder)
    return tokenizer(prompts, context_length=context_length)


class TokenCache:
    """:func:`tokenize_checked` that remembers each prompt's ids.

    Training captions repeat from batch to batch, and open_clip's tokenizer is pure Python: caching
    its ids made a domain-CLIP training step on the demo's data 11% faster on 2 CPU cores
    (``python -m benchmarks.domain_clip_training``; BENCHMARKS.md). The ids are the tokenizer's own,
    so the trained weights are identical.
    Bounded: it starts over after ``max_prompts`` distinct prompts (large caption sets).
    """

    def __init__(
        self, tokenizer: Tokenizer, context_length: int, pad_id: int, encoder: str, max_prompts: int = 65536
    ) -> None:
        self.tokenizer, self.context_length, self.pad_id, self.encoder = tokenizer, context_length, pad_id, encoder
        self.max_prompts = max_prompts
        self._ids: dict[str, torch.Tensor] = {}

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        new = [p for p in dict.fromkeys(prompts) if p not in self._ids]
        if new:
            if len(self._ids) + len(new) > self.max_prompts:
                self._ids.clear()
                new = list(dict.fromkeys(prompts))
            ids = tokenize_checked(self.tokenizer, new, self.context_length, self.pad_id, self.encoder)
            self._ids.update(zip(new, ids))
        return torch.stack([self._ids[p] for p in prompts])
