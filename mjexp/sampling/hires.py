"""Hires fix: sample at the base size, upsample, re-noise part-way and denoise at the target size.

The second pass is SDEdit (Meng et al. 2022): ``strength`` is the fraction of the noise schedule
that is re-entered. The pass uses a grid of ``round(steps / strength)`` steps of the same sampler
and spacing and runs its last ``steps`` of them, so it costs exactly ``steps`` steps and
``strength = 1`` restarts from the top of the schedule (pure noise under zero terminal SNR).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Literal

import torch
import torch.nn.functional as F

from mjexp.diffusion.schedules import NoiseSchedule, SamplingSigmas
from mjexp.sampling.denoiser import Cond, Denoiser
from mjexp.sampling.guidance import Guidance
from mjexp.sampling.noise import ItemNoise
from mjexp.sampling.samplers import SampleResult, SamplerSettings, noised_state, sample, sample_from

UpscaleMode = Literal["nearest", "bilinear", "bicubic"]
Upscaler = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]
"""``upscaler(images (B, C, h, w), (H, W)) -> images (B, C, H, W)``, e.g. a super-resolution stage."""

HIRES_STAGE = 1  # noise stream of the second pass (the base pass is stage 0)


@dataclass(frozen=True)
class HiresSettings:
    """``enabled=False`` makes :func:`hires_fix` exactly plain sampling. ``guidance_scale=None``
    keeps the base guidance scale for the second pass."""

    enabled: bool = False
    scale: float = 2.0
    upscaler: UpscaleMode | Upscaler = "bicubic"
    strength: float = 0.5
    steps: int = 10
    guidance_scale: float | None = None

    def __post_init__(self) -> None:
        if not self.scale >= 1:
            raise ValueError(f"hires.scale must be >= 1, got {self.scale}")
        if not callable(self.upscaler) and self.upscaler not in ("nearest", "bilinear", "bicubic"):
            raise ValueError(
                f"unknown hires.upscaler {self.upscaler!r}; "
                "choose nearest, bilinear, bicubic or pass a callable"
            )
        if not 0 < self.strength <= 1:
            raise ValueError(f"hires.strength must be in (0, 1], got {self.strength}")
        if self.steps < 1:
            raise ValueError(f"hires.steps must be >= 1, got {self.steps}")
        if self.guidance_scale is not None and not self.guidance_scale >= 0:
            raise ValueError(f"hires.guidance_scale must be >= 0, got {self.guidance_scale}")

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        return round(height * self.scale), round(width * self.scale)


def upscale(images: torch.Tensor, size: tuple[int, int], upscaler: UpscaleMode | Upscaler) -> torch.Tensor:
    """Resize to ``size`` by interpolation or a callable stage, checking the callable's output."""
    if callable(upscaler):
        out = upscaler(images, size)
    else:
        align = None if upscaler == "nearest" else False
        out = F.interpolate(images, size=size, mode=upscaler, align_corners=align)
    expected = (*images.shape[:2], *size)
    if tuple(out.shape) != expected:
        raise ValueError(f"upscaler returned shape {tuple(out.shape)}, expected {expected}")
    return out


def renoise_grid(schedule: NoiseSchedule, sampler: SamplerSettings, strength: float) -> SamplingSigmas:
    """The last ``sampler.steps`` entries of the ``round(steps / strength)``-step grid."""
    total = max(sampler.steps, round(sampler.steps / strength))
    full = replace(sampler, steps=total).grid(schedule)
    skip = total - sampler.steps
    return SamplingSigmas(full.sigmas[skip:], full.timesteps[skip:])


@torch.no_grad()
def hires_fix(
    denoiser: Denoiser,
    noise: ItemNoise,
    cond: Cond,
    uncond: Cond | None = None,
    *,
    sampler: SamplerSettings = SamplerSettings(),
    guidance: Guidance = Guidance(),
    hires: HiresSettings = HiresSettings(),
) -> SampleResult:
    """Two-stage generation; the result keeps the base images and sums both stages' costs."""
    base = sample(denoiser, noise, cond, uncond, sampler=sampler, guidance=guidance)
    if not hires.enabled:
        return base
    size = hires.target_size(*base.images.shape[-2:])
    upscaled = upscale(base.images, size, hires.upscaler)
    second = replace(sampler, steps=hires.steps)
    grid = renoise_grid(denoiser.schedule, second, hires.strength)
    hires_noise = noise.at_stage(HIRES_STAGE, (base.images.shape[1], *size))
    x = noised_state(upscaled, hires_noise.initial(), float(grid.sigmas[0]))
    hires_guidance = (
        guidance if hires.guidance_scale is None else replace(guidance, scale=hires.guidance_scale)
    )
    final = sample_from(
        denoiser, x, grid, hires_noise.step, cond, uncond, sampler=second, guidance=hires_guidance
    )
    return SampleResult(
        images=final.images,
        nfe=base.nfe + final.nfe,
        network_evals=base.network_evals + final.network_evals,
        base_images=base.images,
    )
