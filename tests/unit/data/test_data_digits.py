"""scikit-learn digits: shapes, captions, labels that match the source, disjoint splits."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

from mjexp.data.digits import DIGIT_WORDS, DigitsDataModule
from mjexp.data.dataset_settings import DigitsSettings
from mjexp.data.splits import SPLITS


def test_splits_partition_all_digits_with_the_requested_fractions() -> None:
    module = DigitsDataModule(DigitsSettings(judge_fraction=0.2, val_fraction=0.1, test_fraction=0.1))
    sizes = {split: len(module.dataset(split)) for split in SPLITS}
    assert sum(sizes.values()) == 1797
    assert abs(sizes["judge"] - 0.2 * 1797) <= 1 and abs(sizes["test"] - 0.1 * 1797) <= 1
    digests = [{bytes(image.numpy()) for image in module.dataset(split).images} for split in SPLITS]
    assert sum(len(d) for d in digests) == len(set().union(*digests))  # no image in two splits


def test_images_captions_and_attributes() -> None:
    module = DigitsDataModule(DigitsSettings(resolution=8, test_fraction=0.1))
    dataset = module.dataset("test")
    sample = dataset[0]
    assert sample["image"].shape == (3, 8, 8) and sample["text"] == f"a handwritten digit {sample['attrs']['digit']}"
    assert module.attribute_values() == {"digit": list(DIGIT_WORDS)}
    # at the native 8 px the pixels are the source's 0..16 ink levels scaled to 0..255, one per label
    source = load_digits()
    ink = np.rint(source.images * 255 / 16).astype(np.uint8)
    for image, word in zip(dataset.images[:20], dataset.attrs["digit"][:20]):
        assert torch.equal(image[0], image[2])
        match = np.flatnonzero((ink == image[0].numpy()).all(axis=(1, 2)))
        assert len(match) >= 1 and DIGIT_WORDS[source.target[match[0]]] == word


def test_upsampled_digits_keep_their_ink() -> None:
    low = DigitsDataModule(DigitsSettings(resolution=8)).dataset("val").images.float().mean((1, 2, 3))
    high = DigitsDataModule(DigitsSettings(resolution=32)).dataset("val").images.float().mean((1, 2, 3))
    assert high.shape == low.shape and torch.allclose(high, low, atol=6)
