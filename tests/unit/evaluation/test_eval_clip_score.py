"""CLIP-score formula against torchmetrics' own update function on fixed embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.functional.multimodal.clip_score import _clip_score_update

from evaluation.clip_score import HESSEL_WEIGHT, clip_scores


class FixedEmbeddings:
    """Stands in for a transformers CLIP model + processor: returns given embeddings."""

    config = object()  # no text_config: torchmetrics skips its truncation check

    def __init__(self, image: torch.Tensor, text: torch.Tensor) -> None:
        self.image, self.text = image, text

    def __call__(self, images=None, text=None, **kwargs):
        n = len(images) if images is not None else len(text)
        return {"pixel_values": torch.zeros(n, 1), "input_ids": torch.zeros(n, 1), "attention_mask": torch.ones(n, 1)}

    def to(self, device):
        return self

    def get_image_features(self, pixel_values):
        return self.image

    def get_text_features(self, input_ids, attention_mask):
        return self.text


def test_matches_torchmetrics_when_cosines_are_positive() -> None:
    g = torch.Generator().manual_seed(0)
    image = torch.randn(5, 8, generator=g).abs() * 3  # unnormalised, non-negative: all cosines >= 0
    text = torch.randn(5, 8, generator=g).abs()
    fake = FixedEmbeddings(image, text)
    theirs, _ = _clip_score_update([torch.zeros(3, 4, 4)] * 5, ["a"] * 5, fake, fake)
    np.testing.assert_allclose(clip_scores(image, text), theirs.double().numpy(), rtol=1e-6)


def test_clamps_each_pair_and_applies_the_weight() -> None:
    image = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    text = torch.tensor([[1.0, 1.0], [-1.0, 0.0]])  # cos = 0.707 and -1
    assert clip_scores(image, text).tolist() == pytest.approx([100 / np.sqrt(2), 0.0])
    assert clip_scores(image, text, HESSEL_WEIGHT).tolist() == pytest.approx([2.5 / np.sqrt(2), 0.0])
    with pytest.raises(ValueError, match="pair up"):
        clip_scores(image, text[:1])
