"""Noise share: which generated images are per-pixel noise rather than a picture.

A model that fails to denoise (e.g. an eps-prediction model sampled deterministically;
docs/results/2026-11-25-default-variants.md) leaves some samples as coloured noise. FID and CLIP-score only blur that
into a worse mean; this counts it. An image's *roughness* is the mean absolute difference of
horizontally and vertically neighbouring pixel values; an image counts as noise when it is rougher
than ``factor`` times the roughest reference image. Roughness per pixel depends on the image size,
so generated images of another size (the hires fix's output) are first resized to the reference's
(area averaging down, bilinear up). Clamped Gaussian noise has a roughness of about 0.41 at any
size; when the threshold is not below that (real images too rough, e.g. textured photos), the test
cannot tell noise from a picture: the metric is left out and its params say why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

NOISE_FACTOR = 2.0  # guidance sharpens edges of the built-in shapes up to 1.5x; noise is ~8x
NOISE_PROBE_IMAGES = 64
NOISE_PROBE_SEED = 0


def roughness(images: torch.Tensor) -> torch.Tensor:
    """Per image of a uint8 (N, C, H, W) batch, float64 in [0, 1]: 0 for a flat image, 1 for a
    black-and-white checkerboard."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"roughness needs uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
    x = images.double() / 255
    across = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    down = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    return (across + down) / 2


def resized(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 ``images`` at ``size`` (H, W): unchanged when they already are; else area averaging
    to shrink (a 2x nearest upscale comes back exactly), bilinear to enlarge."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    if images.shape[-2] >= size[0] and images.shape[-1] >= size[1]:
        scaled = F.interpolate(images.float(), size=size, mode="area")
    else:
        scaled = F.interpolate(images.float(), size=size, mode="bilinear", align_corners=False)
    return scaled.round().clamp(0, 255).to(torch.uint8)


def gaussian_noise_roughness(channels: int, height: int, width: int) -> float:
    """Mean roughness of standard-normal images clamped to [-1, 1] and quantised like samples
    (a fixed seed, so the same number every time)."""
    generator = torch.Generator().manual_seed(NOISE_PROBE_SEED)
    z = torch.randn(NOISE_PROBE_IMAGES, channels, height, width, generator=generator).clamp(-1, 1)
    return float(roughness(((z + 1) * 127.5).round().to(torch.uint8)).mean())


@dataclass(frozen=True)
class NoiseShare:
    """``value`` and ``standard_error`` are None when the threshold would not flag Gaussian noise;
    ``params`` says why."""

    value: float | None
    standard_error: float | None
    params: dict[str, object]


def noise_share(
    generated: torch.Tensor,
    reference_roughness: torch.Tensor,
    reference_size: tuple[int, int],
    factor: float = NOISE_FACTOR,
) -> NoiseShare:
    """Share of uint8 ``generated`` images rougher than ``factor`` x the roughest reference image
    (both at ``reference_size``), with its binomial standard error."""
    if len(reference_roughness) == 0:
        raise ValueError("noise share needs the roughness of at least one reference image")
    threshold = factor * float(reference_roughness.max())
    noise_level = gaussian_noise_roughness(generated.shape[1], *reference_size)
    params: dict[str, object] = {
        "definition": "share of images whose roughness (mean |difference| of neighbouring pixels, "
        "0-1) exceeds factor x the roughest reference image",
        "factor": factor,
        "reference_max_roughness": float(reference_roughness.max()),
        "threshold": threshold,
        "gaussian_noise_roughness": noise_level,
        "n_images": len(generated),
        "n_reference": len(reference_roughness),
        "compared_at": list(reference_size),
    }
    if threshold >= noise_level:
        params["not_reported"] = "the reference images are too rough: the threshold would not flag Gaussian noise"
        return NoiseShare(None, None, params)
    p = float((roughness(resized(generated, reference_size)) > threshold).double().mean())
    return NoiseShare(p, math.sqrt(p * (1 - p) / len(generated)), params)
