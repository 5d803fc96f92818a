"""Image validation and the one explicit float -> uint8 quantisation every metric sees.

Every feature extractor (torch-fidelity's and the judge) consumes uint8 (B, 3, H, W), so the
conversion from the model's float output happens exactly once, here, and is recorded: clean-fid
(Parmar et al., 2022) showed that an unrecorded resize or quantisation choice shifts FID.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

# Float images outside [-1, 1] by more than this are a wrong value range (e.g. [0, 255]), not
# sampler overshoot; smaller overshoot is clamped and the clamped fraction is recorded.
RANGE_ERROR_MARGIN = 0.5


@dataclass(frozen=True)
class QuantisationPolicy:
    """How float images became uint8; logged with every metric."""

    input_range: str = "[-1, 1]"
    clamp: bool = True
    rounding: str = "round-half-to-even of (x + 1) * 127.5"
    resize: str = "none here; each extractor applies its own (recorded in its params)"

    def as_params(self) -> dict[str, object]:
        return asdict(self)


POLICY = QuantisationPolicy()


def check_images(images: torch.Tensor, name: str = "images") -> None:
    """Raise a ValueError naming the problem if ``images`` is not a valid (B, 3, H, W) batch.

    Accepts uint8 in [0, 255] or a floating dtype that is finite and within [-1, 1] up to
    ``RANGE_ERROR_MARGIN``.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{name} must have shape (B, 3, H, W), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty (batch size 0)")
    if images.dtype == torch.uint8:
        return
    if not images.dtype.is_floating_point:
        raise ValueError(f"{name} must be uint8 or floating point, got dtype {images.dtype}")
    bad = ~torch.isfinite(images).flatten(1).all(dim=1)
    if bad.any():
        first = int(bad.nonzero()[0])
        raise ValueError(
            f"{int(bad.sum())} of {images.shape[0]} {name} contain NaN or inf values (first at index {first}); "
            "the generator diverged or the images were not decoded correctly"
        )
    low, high = float(images.min()), float(images.max())
    if low < -1 - RANGE_ERROR_MARGIN or high > 1 + RANGE_ERROR_MARGIN:
        raise ValueError(
            f"float {name} must lie in [-1, 1] (the batch contract); got values in [{low:.3g}, {high:.3g}]. "
            "Pass uint8 for [0, 255] images or rescale [0, 1] images with x * 2 - 1"
        )


def to_uint8(images: torch.Tensor, name: str = "images") -> tuple[torch.Tensor, float]:
    """Validate and quantise to uint8; return the images and the fraction of clamped values.

    uint8 input passes through unchanged (fraction 0).
    """
    check_images(images, name)
    if images.dtype == torch.uint8:
        return images, 0.0
    images = images.to(torch.float64)
    clamped = float(((images < -1) | (images > 1)).double().mean())
    pixels = torch.round((images.clamp(-1.0, 1.0) + 1.0) * 127.5)
    return pixels.to(torch.uint8), clamped
