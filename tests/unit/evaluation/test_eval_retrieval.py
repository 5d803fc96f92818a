"""The judge's caption-retrieval check against constructed embeddings with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation.judge import Validity
from evaluation.retrieval import Retrieval, caption_retrieval


def one_hot_encoder(vocabulary: list[str]):
    """Text embeddings that are the standard basis: caption k -> e_k."""
    index = {caption: i for i, caption in enumerate(vocabulary)}

    def encode(texts):
        return torch.eye(len(vocabulary))[[index[t] for t in texts]]

    return encode


def test_a_judge_that_sees_each_caption_exactly_retrieves_every_one() -> None:
    vocabulary = [f"caption {k}" for k in range(50)]
    captions = [vocabulary[i % 50] for i in range(120)]
    images = one_hot_encoder(vocabulary)(captions)
    result = caption_retrieval(images, captions, one_hot_encoder(vocabulary))
    assert result == Retrieval(1.0, 32, 120, 0.5) and result.reliable and result.chance == 1 / 32


def test_a_judge_that_reads_the_wrong_caption_retrieves_none_and_fails() -> None:
    vocabulary = [f"caption {k}" for k in range(10)]
    captions = [vocabulary[i % 10] for i in range(40)]
    shifted = [vocabulary[(i + 1) % 10] for i in range(40)]  # each image looks like the next caption
    result = caption_retrieval(one_hot_encoder(vocabulary)(shifted), captions, one_hot_encoder(vocabulary))
    assert result.candidates == 10  # fewer distinct captions than 32: all of them compete
    assert result.top1 == 0.0 and not result.reliable


def test_ties_count_as_misses_and_one_distinct_caption_measures_nothing() -> None:
    vocabulary = ["a", "b", "c"]
    flat = torch.full((6, 3), 3 ** -0.5)  # equally similar to every caption
    assert caption_retrieval(flat, ["a", "b", "c"] * 2, one_hot_encoder(vocabulary)).top1 == 0.0
    assert caption_retrieval(flat, ["a"] * 6, one_hot_encoder(vocabulary)) is None


def test_an_uninformed_judge_scores_chance_within_four_standard_errors() -> None:
    vocabulary = [f"caption {k}" for k in range(100)]
    g = torch.Generator().manual_seed(0)
    texts = torch.nn.functional.normalize(torch.randn(100, 16, generator=g), dim=1)
    index = {c: i for i, c in enumerate(vocabulary)}
    captions = [vocabulary[i % 100] for i in range(3000)]
    images = torch.nn.functional.normalize(torch.randn(3000, 16, generator=g), dim=1)
    result = caption_retrieval(images, captions, lambda t: texts[[index[c] for c in t]], seed=3)
    chance = 1 / 32
    assert abs(result.top1 - chance) < 4 * np.sqrt(chance * (1 - chance) / 3000)


def test_the_same_seed_draws_the_same_distractors() -> None:
    vocabulary = [f"caption {k}" for k in range(60)]
    g = torch.Generator().manual_seed(1)
    texts = torch.nn.functional.normalize(torch.randn(60, 8, generator=g), dim=1)
    index = {c: i for i, c in enumerate(vocabulary)}
    captions = [vocabulary[i % 60] for i in range(200)]
    images = torch.nn.functional.normalize(texts[[index[c] for c in captions]] + 0.8 * torch.randn(200, 8, generator=g), dim=1)
    encode = lambda t: texts[[index[c] for c in t]]  # noqa: E731
    assert caption_retrieval(images, captions, encode, seed=5) == caption_retrieval(images, captions, encode, seed=5)
    with pytest.raises(ValueError, match="3 image embeddings but 2 captions"):
        caption_retrieval(images[:3], captions[:2], encode)


def test_validity_fails_on_retrieval_even_with_perfect_attributes() -> None:
    validity = Validity({"color": 1.0}, 80, 0.95, Retrieval(0.4, 32, 80, 0.5))
    assert not validity.reliable
    assert validity.as_metrics() == {"judge_validity/color": 1.0, "judge_validity/retrieval_top1": 0.4,
                                     "judge_validity/reliable": 0.0}
    line = validity.describe("test")
    assert "caption retrieval top-1 0.400 among 32 captions (chance 0.031, threshold 0.5)" in line and "UNRELIABLE" in line
    assert Validity({}, 80, 0.95, Retrieval(0.9, 32, 80, 0.5)).reliable  # data without attributes: retrieval decides
