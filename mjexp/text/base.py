"""The contract every text encoder keeps (docs/architecture.md, "Contracts").

``encode(prompts) -> TextEmbedding`` and ``null_embedding(batch)``: the embedding of the empty
prompt, which is what condition dropout and the unconditional branch of CFG mean by "no prompt".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn


@dataclass
class TextEmbedding:
    """Per-token states, their padding mask and one pooled vector per prompt."""

    tokens: torch.Tensor  # (B, L, D) float
    mask: torch.Tensor  # (B, L) bool, True where a real token is
    pooled: torch.Tensor  # (B, D_pooled) float

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "TextEmbedding":
        """Move to ``device``; ``dtype`` applies to the float tensors only (the mask stays bool)."""
        return TextEmbedding(
            self.tokens.to(device=device, dtype=dtype),
            self.mask.to(device=device),
            self.pooled.to(device=device, dtype=dtype),
        )

    def index(self, rows: torch.Tensor | slice | Sequence[int]) -> "TextEmbedding":
        """Select prompts (rows) of the batch."""
        return TextEmbedding(self.tokens[rows], self.mask[rows], self.pooled[rows])

    def where(self, keep: torch.Tensor, other: "TextEmbedding") -> "TextEmbedding":
        """Row-wise choice: ``self`` where ``keep`` (B,) is True, else ``other`` (condition dropout)."""
        k3, k2 = keep[:, None, None], keep[:, None]
        return TextEmbedding(
            torch.where(k3, self.tokens, other.tokens),
            torch.where(k2, self.mask, other.mask),
            torch.where(k2, self.pooled, other.pooled),
        )

    @staticmethod
    def cat(embeddings: Sequence["TextEmbedding"]) -> "TextEmbedding":
        """Concatenate along the batch (e.g. cond and uncond for one batched CFG forward)."""
        return TextEmbedding(
            torch.cat([e.tokens for e in embeddings]),
            torch.cat([e.mask for e in embeddings]),
            torch.cat([e.pooled for e in embeddings]),
        )

    def detach(self) -> "TextEmbedding":
        return TextEmbedding(self.tokens.detach(), self.mask, self.pooled.detach())


class TextEncoder(nn.Module):
    """Base class: subclasses implement :meth:`encode`; the rest is shared.

    Attributes every encoder sets: ``dim`` (token width D), ``pooled_dim``, ``max_length``
    (context length in tokens) and ``trainable`` (whether the diffusion optimiser updates it).
    """

    dim: int
    pooled_dim: int
    max_length: int
    trainable: bool = False

    def encode(self, prompts: list[str]) -> TextEmbedding:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, prompts: list[str]) -> TextEmbedding:
        return self.encode(prompts)

    def null_embedding(self, batch_size: int) -> TextEmbedding:
        """The empty prompt's embedding repeated ``batch_size`` times."""
        single = self.encode([""])
        return TextEmbedding(
            single.tokens.expand(batch_size, -1, -1),
            single.mask.expand(batch_size, -1),
            single.pooled.expand(batch_size, -1),
        )


def warn_truncated(prompts: Sequence[str], lengths: Sequence[int], max_length: int, encoder: str) -> None:
    """One warning naming how many prompts exceeded the context and were cut."""
    over = [p for p, n in zip(prompts, lengths) if n > max_length]
    if over:
        example = over[0] if len(over[0]) <= 80 else over[0][:77] + "..."
        warnings.warn(
            f"{len(over)} prompt(s) longer than the {encoder} context of {max_length} tokens were "
            f"truncated (e.g. {example!r})",
            stacklevel=3,
        )
