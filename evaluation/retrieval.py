"""The judge's caption retrieval on held-out real images: a validity check for every data set.

Attribute accuracy checks a judge only where the data has attribute labels. Every data set has
captions, so this check applies everywhere: for each held-out real image, does the judge rank its
own caption above ``candidates - 1`` other captions of the same split (drawn without repeats from
the split's distinct captions, never the image's own)? Chance is ``1 / candidates``. A judge that
cannot tell real images' captions apart cannot score generated images by their prompts either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

CANDIDATES = 32  # the true caption and 31 others: chance 1/32
RETRIEVAL_THRESHOLD = 0.5
TextEncoder = Callable[[Sequence[str]], torch.Tensor]


@dataclass(frozen=True)
class Retrieval:
    """Top-1 caption retrieval of the judge on ``n_images`` real images among ``candidates``
    captions each; ``reliable`` iff ``top1 >= threshold``."""

    top1: float
    candidates: int
    n_images: int
    threshold: float

    @property
    def chance(self) -> float:
        return 1.0 / self.candidates

    @property
    def reliable(self) -> bool:
        return self.top1 >= self.threshold

    def as_dict(self) -> dict[str, object]:
        return {
            "top1": self.top1, "candidates": self.candidates, "chance": self.chance, "n_images": self.n_images,
            "threshold": self.threshold, "reliable": self.reliable,
        }


def caption_retrieval(
    image_embeddings: torch.Tensor,
    captions: Sequence[str],
    encode_texts: TextEncoder,
    candidates: int = CANDIDATES,
    threshold: float = RETRIEVAL_THRESHOLD,
    seed: int = 0,
) -> Retrieval | None:
    """Retrieval of each image's caption (unit-norm ``image_embeddings`` (N, D), one caption per
    image) among it and up to ``candidates - 1`` other distinct captions of the set; None when the
    set has fewer than two distinct captions (nothing to tell apart). Distractors are drawn per
    image from a generator seeded by (``seed``, image index), so the check is reproducible."""
    if len(captions) != image_embeddings.shape[0]:
        raise ValueError(f"{image_embeddings.shape[0]} image embeddings but {len(captions)} captions")
    distinct = sorted(set(captions))
    if len(distinct) < 2:
        return None
    k = min(candidates, len(distinct))
    index = {caption: i for i, caption in enumerate(distinct)}
    similarity = (image_embeddings.double() @ encode_texts(distinct).double().T).numpy()  # (N, distinct)
    correct = np.zeros(len(captions), dtype=bool)
    for i, caption in enumerate(captions):
        own = index[caption]
        others = np.delete(np.arange(len(distinct)), own)
        drawn = np.random.default_rng([seed, i]).choice(others, size=k - 1, replace=False)
        correct[i] = similarity[i, own] > similarity[i, drawn].max()
    return Retrieval(float(correct.mean()), k, len(captions), threshold)
