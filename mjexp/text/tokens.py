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
