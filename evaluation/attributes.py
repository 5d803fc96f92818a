"""Prompt-attribute accuracy (GenEval-style, Ghosh et al. 2023) with a zero-shot CLIP judge.

For an image with attributes ``attrs`` and an attribute ``a``, the candidates are the true caption
and every caption with one key of ``a`` swapped to another value. The image counts as correct when
the true caption is *strictly* the most similar (so a judge that cannot tell the captions apart
scores 0, not 1). With one object this is the zero-shot choice among ``a``'s values; with several
objects it is caption retrieval against one-attribute-swapped captions.

Per-image correctness vectors are kept, so two settings scored on the same prompts and seeds can be
compared with a paired standard error (``paired_difference``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from evaluation.prompt_sets import CaptionTemplate

TextEncoder = Callable[[Sequence[str]], torch.Tensor]


@dataclass(frozen=True)
class AttributeAccuracy:
    """``correct[attribute]`` is a bool vector over images."""

    correct: dict[str, np.ndarray]

    def per_attribute(self) -> dict[str, float]:
        return {name: float(flags.mean()) for name, flags in self.correct.items()}

    @property
    def mean(self) -> float:
        """Unweighted mean over attributes."""
        return float(np.mean(list(self.per_attribute().values())))

    def subset(self, mask: np.ndarray) -> "AttributeAccuracy":
        """The same accuracy over the images where ``mask`` is true (e.g. held-out combinations)."""
        return AttributeAccuracy({name: flags[mask] for name, flags in self.correct.items()})

    def metrics(self, prefix: str) -> dict[str, float]:
        """``{prefix}/{attribute}`` for each attribute and ``{prefix}/mean``."""
        out = {f"{prefix}/{name}": value for name, value in self.per_attribute().items()}
        out[f"{prefix}/mean"] = self.mean
        return out


def matches_any(attrs: Mapping[str, str], entries: Sequence[Mapping[str, str]]) -> bool:
    """True when ``attrs`` agrees with every key of at least one entry (a holdout combination)."""
    return any(all(attrs.get(key) == value for key, value in entry.items()) for entry in entries)


def holdout_accuracy(
    correct: Mapping[str, np.ndarray], attrs: Sequence[Mapping[str, str]],
    holdout: Sequence[Mapping[str, str]], prefix: str,
) -> dict[str, float]:
    """``{prefix}/heldout/...`` and ``{prefix}/seen/...`` accuracies: compositional generalisation
    (combinations the generator never saw in training) next to the seen ones. Empty subsets are left out."""
    mask = np.array([matches_any(row, holdout) for row in attrs], dtype=bool)
    accuracy = AttributeAccuracy({name: np.asarray(flags, dtype=bool) for name, flags in correct.items()})
    out: dict[str, float] = {}
    for name, subset in (("heldout", mask), ("seen", ~mask)):
        if subset.any():
            out.update(accuracy.subset(subset).metrics(f"{prefix}/{name}"))
            out[f"{prefix}/{name}/n_images"] = float(subset.sum())
    return out


def attribute_accuracy(
    image_embeddings: torch.Tensor,
    attrs: Sequence[Mapping[str, str]],
    template: CaptionTemplate,
    encode_texts: TextEncoder,
) -> AttributeAccuracy:
    """Zero-shot correctness per attribute for unit-norm ``image_embeddings`` (N, D)."""
    if len(attrs) != image_embeddings.shape[0]:
        raise ValueError(f"{image_embeddings.shape[0]} image embeddings but {len(attrs)} attribute rows")
    groups = template.groups()
    candidates = [
        {name: [template.render(row)] + template.swaps(row, name) for name in groups} for row in attrs
    ]
    captions = list(dict.fromkeys(c for per_image in candidates for lists in per_image.values() for c in lists))
    index = {caption: i for i, caption in enumerate(captions)}
    similarity = image_embeddings.double() @ encode_texts(captions).double().T  # (N, captions)
    correct = {name: np.zeros(len(attrs), dtype=bool) for name in groups}
    for i, per_image in enumerate(candidates):
        for name, lists in per_image.items():
            scores = similarity[i, [index[c] for c in lists]]
            correct[name][i] = bool(scores[0] > scores[1:].max())
    return AttributeAccuracy(correct)


def paired_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and standard error of ``a - b`` for per-item scores on the same prompts and seeds.

    Pairing removes the between-prompt variance that two independent standard errors would count.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_difference needs two equal-length vectors, got shapes {a.shape} and {b.shape}")
    if a.size < 2:
        raise ValueError(f"paired_difference needs at least 2 pairs, got {a.size}")
    diff = a - b
    return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(diff.size))
