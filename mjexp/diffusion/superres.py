"""Super-resolution conditioning: how a low-resolution image becomes the input of an SR model.

An SR model is a text-conditional denoiser at the target resolution that also sees the low-res
image, upsampled to the target size and concatenated on channels (SR3: Saharia et al. 2022, "Image
Super-Resolution via Iterative Refinement"). Training and sampling build that image the
same way, with the functions below:

- training: real image -> area-downsampled to ``low_resolution`` -> bicubic back up
  (:func:`degrade`); sampling: the base stage's image -> bicubic up (:func:`upsample_condition`);
- both: Gaussian noise augmentation at a level ``s`` in [0, 1] (:func:`noise_augment`), and the
  network is told ``s`` (Ho et al. 2022, "Cascaded Diffusion Models for High Fidelity Image
  Generation", Sec. 3: conditioning augmentation; Saharia et al. 2022, Imagen, Sec. 2.5: noise
  conditioning augmentation with the level as an extra input). Training draws ``s ~ U[0,
  max_noise_aug]`` per image, so the model learns to correct the artefacts of a generated
  low-res image instead of trusting it pixel for pixel; sampling uses one fixed level.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

CONDITION_UPSAMPLING = "bicubic"
"""Interpolation from the low to the target resolution, identical in training and sampling."""


@dataclass(frozen=True)
class SuperResolution:
    """What makes a trained model a super-resolution model (recorded in its config's ``sr`` block).

    ``resolution``: the target size it was trained at; ``low_resolution``: the size its
    conditioning images came from; ``max_noise_aug``: training levels are ``U[0, max_noise_aug]``;
    ``noise_aug``: the level sampling uses unless ``hires.noise_aug`` says otherwise.
    """

    resolution: int
    low_resolution: int = 8  # resolution / low_resolution = the hires.scale it serves (16 / 8 = 2)
    max_noise_aug: float = 0.3
    noise_aug: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.low_resolution < self.resolution:
            raise ValueError(
                f"sr.low_resolution={self.low_resolution} must be in (0, data.resolution={self.resolution})"
            )
        for name in ("max_noise_aug", "noise_aug"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"sr.{name}={getattr(self, name)} must be in [0, 1]")

    @property
    def ratio(self) -> float:
        """Target / low resolution: the ``hires.scale`` this model upsamples by."""
        return self.resolution / self.low_resolution


def upsample_condition(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Low-res images (B, C, h, w) -> (B, C, *size) by bicubic interpolation (no corner alignment)."""
    return F.interpolate(images, size=size, mode=CONDITION_UPSAMPLING, align_corners=False)


def degrade(images: torch.Tensor, low_resolution: int) -> torch.Tensor:
    """Training's conditioning image: area-average down to ``low_resolution`` (an anti-aliased
    box filter), then :func:`upsample_condition` back to the input size."""
    low = F.interpolate(images, size=(low_resolution, low_resolution), mode="area")
    return upsample_condition(low, tuple(images.shape[-2:]))


def noise_augment(images: torch.Tensor, level: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``sqrt(1 - s^2) x + s n`` per image with level ``s`` (B,) in [0, 1]: the VP forward process
    at ``sigma_vp = s`` (level 0 keeps the image, level 1 is pure noise, unit variance kept)."""
    if level.ndim != 1 or len(level) != len(images):
        raise ValueError(f"level must have shape ({len(images)},), got {tuple(level.shape)}")
    s = level.to(images.dtype).view(-1, *([1] * (images.ndim - 1)))
    return (1 - s * s).sqrt() * images + s * noise
