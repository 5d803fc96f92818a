"""scikit-learn's bundled handwritten digits: real data that ships offline.

1,797 grey 8x8 images with 17 ink levels (0..16), upsampled to the resolution as light ink on a
dark background (like the shapes data), replicated to RGB. Captions: "a handwritten digit seven".
Splits come from a seeded permutation with the given fractions (train gets the rest).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

from mjexp.data.captions import CaptionSchema
from mjexp.data.datamodule import CaptionedImageDataModule, TensorCaptionDataset
from mjexp.data.images import resize_square
from mjexp.data.dataset_settings import DigitsSettings
from mjexp.data.splits import permutation_split

DIGIT_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGITS_SCHEMA = CaptionSchema("a handwritten digit {digit}", {"digit": DIGIT_WORDS})
DIGITS_VERSION = 1  # bump when the preprocessing changes the pixels


def digit_images(resolution: int) -> tuple[torch.Tensor, np.ndarray]:
    """All digits as uint8 RGB (N, 3, R, R) and their labels (N,)."""
    data = load_digits()
    ink = torch.from_numpy(np.rint(data.images * (255.0 / 16.0)).astype(np.uint8))[:, None]
    return resize_square(ink, resolution).expand(-1, 3, -1, -1).contiguous(), data.target


class DigitsDataModule(CaptionedImageDataModule):
    """Handwritten digits split into train/judge/val/test by fraction."""

    schema = DIGITS_SCHEMA

    settings: DigitsSettings

    def __init__(self, settings: DigitsSettings = DigitsSettings()) -> None:
        super().__init__(settings)
        self.fractions = settings.fractions

    def build(self, split: str) -> TensorCaptionDataset:
        images, labels = digit_images(self.resolution)
        rows = permutation_split(len(images), self.fractions, self.seed, split)
        words = [DIGIT_WORDS[label] for label in labels[rows]]
        fingerprint = {
            "dataset": "digits",
            "version": DIGITS_VERSION,
            "split": split,
            "resolution": self.resolution,
            "seed": self.seed,
            "fractions": self.fractions,
        }
        captions = [DIGITS_SCHEMA.caption({"digit": w}) for w in words]
        return TensorCaptionDataset(images[torch.from_numpy(rows)], captions, {"digit": words}, fingerprint)
