"""Image tensor conventions shared by every dataset.

Datasets keep images as uint8 (what a PNG holds, so reference statistics match saved files) and
hand the model float images in [-1, 1] (the batch contract).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1], exactly: 0 -> -1 and 255 -> 1."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    return images.to(torch.float32) / 127.5 - 1.0


def resize_square(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize uint8 (N, C, h, w) so the shorter side is ``resolution``, then centre-crop to a square.

    Bilinear with antialiasing, so downscaling averages instead of aliasing and upscaling is smooth.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise TypeError(f"expected uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
    h, w = images.shape[-2:]
    if (h, w) == (resolution, resolution):
        return images
    scale = resolution / min(h, w)
    size = (max(resolution, round(h * scale)), max(resolution, round(w * scale)))
    resized = F.interpolate(images.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    cropped = resized[..., top : top + resolution, left : left + resolution]
    return cropped.round().clamp(0, 255).to(torch.uint8)
