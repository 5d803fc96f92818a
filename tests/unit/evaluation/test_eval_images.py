"""Image validation and the recorded float -> uint8 quantisation."""

from __future__ import annotations

import pytest
import torch

from evaluation.quantisation import check_images, to_uint8


def test_nan_and_inf_images_are_a_clear_error() -> None:
    images = torch.zeros(5, 3, 8, 8)
    images[2, 0, 1, 1] = float("nan")
    images[4, 1, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"2 of 5 images contain NaN or inf values \(first at index 2\)"):
        to_uint8(images)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.zeros(2, 1, 8, 8), r"shape \(B, 3, H, W\)"),
        (torch.zeros(0, 3, 8, 8), "empty"),
        (torch.full((2, 3, 8, 8), 200.0), r"must lie in \[-1, 1\]"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.int32), "uint8 or floating point"),
    ],
)
def test_invalid_batches_name_the_problem(images: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_images(images)


def test_quantisation_values_and_clamped_fraction() -> None:
    images = torch.tensor([-1.0, 1.0, 0.0, 1.2]).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    pixels, clamped = to_uint8(images)
    # (x + 1) * 127.5 rounded half to even: -1 -> 0, 1 -> 255, 0 -> 127.5 -> 128, 1.2 clamps to 255.
    assert pixels.dtype == torch.uint8 and pixels[0, 0, 0].tolist() == [0, 255, 128, 255]
    assert clamped == pytest.approx(0.25)


def test_uint8_passes_through() -> None:
    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    pixels, clamped = to_uint8(images)
    assert pixels is images and clamped == 0.0
