"""Per-prompt diversity against hand-computed values and an independent pairwise computation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import cosine_distances

from evaluation.diversity import prompt_diversity


def test_hand_computed_groups() -> None:
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    # "a": orthogonal pair (distance 1); "b": identical directions, other lengths (0); "c": one image.
    embeddings = torch.tensor([e1, e1, e2, [3.0, 0.0], [0.0, 5.0]])
    result = prompt_diversity(embeddings, ["a", "b", "a", "b", "c"])
    assert result is not None
    np.testing.assert_allclose(result.per_prompt, [1.0, 0.0], atol=1e-12)
    assert result.mean == pytest.approx(0.5)
    assert result.standard_error == pytest.approx(0.5)  # std([1, 0], ddof=1) / sqrt(2)
    assert result.images_per_prompt == (2, 2) and result.params["n_prompts"] == 2


def test_matches_the_mean_of_sklearn_pairwise_distances() -> None:
    g = torch.Generator().manual_seed(0)
    sizes = {"p0": 2, "p1": 3, "p2": 5, "p3": 7, "single": 1}
    groups = [name for name, n in sizes.items() for _ in range(n)]
    order = torch.randperm(len(groups), generator=g).tolist()  # interleaved, as prompts come in batches
    groups = [groups[i] for i in order]
    embeddings = torch.randn(len(groups), 16, generator=g) + 0.5  # a shared offset: distances below 1
    result = prompt_diversity(embeddings, groups)
    expected = []
    for name in dict.fromkeys(groups):  # order of first appearance
        rows = embeddings[[i for i, group in enumerate(groups) if group == name]].double().numpy()
        if len(rows) < 2:
            continue
        distances = cosine_distances(rows)
        expected.append(np.mean([distances[i, j] for i, j in itertools.combinations(range(len(rows)), 2)]))
    np.testing.assert_allclose(result.per_prompt, expected, rtol=1e-10)
    assert result.mean == pytest.approx(np.mean(expected))
    assert result.standard_error == pytest.approx(np.std(expected, ddof=1) / math.sqrt(len(expected)))
    assert result.images_per_prompt == (2, 7)


def test_isotropic_directions_have_diversity_one() -> None:
    """Independent isotropic Gaussians: E[cos] = 0, so the mean is 1 within a few standard errors."""
    g = torch.Generator().manual_seed(1)
    result = prompt_diversity(torch.randn(400 * 4, 8, generator=g), [i // 4 for i in range(1600)])
    assert abs(result.mean - 1.0) < 4 * result.standard_error


def test_no_repeated_prompt_gives_none_and_shapes_are_checked() -> None:
    assert prompt_diversity(torch.randn(3, 4), ["a", "b", "c"]) is None
    with pytest.raises(ValueError, match="N group labels"):
        prompt_diversity(torch.randn(3, 4), ["a", "a"])
    single = prompt_diversity(torch.randn(2, 4), ["a", "a"])
    assert single is not None and math.isnan(single.standard_error)
