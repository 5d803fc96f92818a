"""CLIP-score: w * max(cos(E_image, E_text), 0) per image, averaged (Hessel et al., 2021, eq. 1).

Conventions differ between papers and libraries, so the one used is recorded with every number:
``weight=100`` with no prefix is torchmetrics' scale; ``weight=2.5`` with the prefix "A photo
depicts " is the CLIPScore paper's. torchmetrics clamps the *mean* (max(mean(100 cos), 0)); here
each image is clamped, as in the paper; the two agree whenever every cosine is >= 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from evaluation.clip_model import ClipModel

HESSEL_WEIGHT = 2.5
HESSEL_PREFIX = "A photo depicts "


@dataclass(frozen=True)
class ClipScoreConvention:
    weight: float = 100.0
    prefix: str = ""

    @property
    def params(self) -> dict[str, object]:
        return {
            "score": f"{self.weight} * max(cos, 0) per image, then mean",
            "weight": self.weight,
            "prompt_prefix": self.prefix,
        }


def clip_scores(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, weight: float = 100.0) -> np.ndarray:
    """Per-pair scores w * max(cos, 0) for matching rows of two (N, D) embedding batches."""
    if image_embeddings.shape != text_embeddings.shape:
        raise ValueError(
            f"image and text embeddings must pair up row by row, got {tuple(image_embeddings.shape)} "
            f"and {tuple(text_embeddings.shape)}"
        )
    image = torch.nn.functional.normalize(image_embeddings.double(), dim=-1)
    text = torch.nn.functional.normalize(text_embeddings.double(), dim=-1)
    return (weight * (image * text).sum(dim=-1).clamp(min=0.0)).numpy()


@dataclass(frozen=True)
class ClipScoreResult:
    per_image: np.ndarray
    params: dict[str, object]

    @property
    def mean(self) -> float:
        return float(self.per_image.mean())

    @property
    def standard_error(self) -> float:
        n = self.per_image.size
        return float(self.per_image.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")


def clip_score(
    model: ClipModel,
    image_embeddings: torch.Tensor,
    prompts: Sequence[str],
    convention: ClipScoreConvention = ClipScoreConvention(),
) -> ClipScoreResult:
    """Score image embeddings from ``model`` against their prompts (prefix applied here)."""
    texts = [convention.prefix + prompt for prompt in prompts]
    scores = clip_scores(image_embeddings, model.encode_texts(texts), convention.weight)
    params = {**model.params, **convention.params, "prompts_at_context_limit": model.truncated(texts), "n_images": len(texts)}
    return ClipScoreResult(scores, params)
