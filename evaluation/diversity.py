"""Per-prompt sample diversity: how different the images of one prompt are from each other.

Guidance trades diversity for prompt faithfulness (Ho & Salimans, 2022), and FID mixes that loss
with every other error, so it is measured on its own: for each prompt with at least two images,
the mean cosine distance ``1 - cos`` between the image embeddings of every pair of its images,
then the mean over prompts. Prompts are independent draws, so the standard error is the spread
of the per-prompt values over the number of prompts. The same statistic of real images that share
a caption is the data's own diversity, the level a faithful model should keep.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np
import torch

DEFINITION = (
    "mean over prompts of the mean cosine distance (1 - cos) between the image embeddings of "
    "every pair of images of the prompt; prompts with one image are left out"
)


@dataclass(frozen=True)
class Diversity:
    mean: float
    standard_error: float  # over prompts; NaN with a single prompt
    per_prompt: np.ndarray  # one value per prompt with >= 2 images, in order of first appearance
    groups: tuple[Hashable, ...]  # the prompts of ``per_prompt``, same order (to pair two settings)
    images_per_prompt: tuple[int, int]  # (fewest, most) among the prompts counted

    @property
    def params(self) -> dict[str, object]:
        return {"definition": DEFINITION, "n_prompts": int(self.per_prompt.size),
                "images_per_prompt": list(self.images_per_prompt)}


def prompt_diversity(embeddings: torch.Tensor, groups: Sequence[Hashable]) -> Diversity | None:
    """Diversity of ``embeddings`` (N, D) grouped by ``groups`` (N labels, e.g. the prompts);
    ``None`` when no group has two images.

    The mean pairwise cosine of a group of ``n`` unit vectors with sum ``s`` is
    ``(|s|^2 - n) / (n (n - 1))``, so no pairwise matrix is formed.
    """
    if embeddings.ndim != 2 or embeddings.shape[0] != len(groups):
        raise ValueError(f"need (N, D) embeddings and N group labels, got {tuple(embeddings.shape)} and {len(groups)}")
    rows: dict[Hashable, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        rows[group].append(index)
    counted = {group: indices for group, indices in rows.items() if len(indices) >= 2}
    if not counted:
        return None
    unit = torch.nn.functional.normalize(embeddings.detach().double().cpu(), dim=1)
    values = []
    for indices in counted.values():
        n = len(indices)
        total = unit[indices].sum(dim=0)
        values.append(1.0 - (float(total @ total) - n) / (n * (n - 1)))
    per_prompt = np.asarray(values)
    se = float(per_prompt.std(ddof=1) / math.sqrt(per_prompt.size)) if per_prompt.size > 1 else math.nan
    sizes = [len(indices) for indices in counted.values()]
    return Diversity(float(per_prompt.mean()), se, per_prompt, tuple(counted), (min(sizes), max(sizes)))


def paired_diversity_difference(a: Diversity, b: Diversity) -> tuple[float, float, int]:
    """Mean and standard error of ``a - b`` over the prompts both measured (same prompts and noise:
    pairing removes the between-prompt spread), and the number of those prompts."""
    index_b = {group: i for i, group in enumerate(b.groups)}
    shared = [(i, index_b[group]) for i, group in enumerate(a.groups) if group in index_b]
    if len(shared) < 2:
        raise ValueError(f"a paired diversity difference needs 2 shared prompts, got {len(shared)}")
    diff = np.array([a.per_prompt[i] - b.per_prompt[j] for i, j in shared])
    return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(diff.size)), diff.size
