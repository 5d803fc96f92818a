"""Photometric jitter for the judge: saturation and contrast as PIL's ImageEnhance computes them,
hue kept, and the draws within their ranges."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

from mjexp.text import photometric
from mjexp.text.photometric import adjust, photometric_jitter


def _images(n: int = 3, size: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 3, size, size), generator=g).float() / 255).contiguous()


def _pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray((image * 255).round().byte().permute(1, 2, 0).numpy())


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255


@pytest.mark.parametrize("factor", [0.7, 1.25, 1.6])
def test_saturation_and_contrast_match_pil_image_enhance(factor: float) -> None:
    images = _images()
    ones = torch.ones(len(images))
    saturated = adjust(images, torch.full_like(ones, factor), ones)
    contrasted = adjust(images, ones, torch.full_like(ones, factor))
    for i, image in enumerate(images):
        want_saturated = _tensor(ImageEnhance.Color(_pil(image)).enhance(factor))
        want_contrasted = _tensor(ImageEnhance.Contrast(_pil(image)).enhance(factor))
        assert (saturated[i] - want_saturated).abs().max() <= 2.5 / 255
        assert (contrasted[i] - want_contrasted).abs().max() <= 2.5 / 255


def test_unclipped_saturation_and_contrast_keep_the_hue() -> None:
    pixel = torch.tensor([0.55, 0.35, 0.45]).view(1, 3, 1, 1).repeat(1, 1, 4, 4)
    image = pixel.clone()
    image[..., :2, :] = 0.45  # a grey half, so the image mean differs from the pixel
    out = adjust(image, torch.tensor([1.3]), torch.tensor([1.2]))
    before = colorsys.rgb_to_hsv(*pixel[0, :, 0, 0].tolist())[0]
    after = colorsys.rgb_to_hsv(*out[0, :, 3, 3].tolist())[0]
    assert after == pytest.approx(before, abs=1e-6)
    assert out[0, :, 3, 3].max() - out[0, :, 3, 3].min() > pixel[0, :, 0, 0].max() - pixel[0, :, 0, 0].min()


def test_jitter_draws_within_its_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = {}

    def record(images, saturation, contrast):
        drawn.update(saturation=saturation, contrast=contrast)
        return images

    monkeypatch.setattr(photometric, "adjust", record)
    images = _images(n=4000, size=1) * 2 - 1
    out = photometric_jitter(images, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, images)  # the [-1, 1] <-> [0, 1] mapping round-trips
    for name, (low, high) in (("saturation", photometric.SATURATION), ("contrast", photometric.CONTRAST)):
        assert low <= drawn[name].min() and drawn[name].max() <= high
        assert drawn[name].mean() == pytest.approx((low + high) / 2, abs=0.02)
