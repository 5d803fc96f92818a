"""Hires fix: sample at the base size, upsample, re-noise part-way and denoise at the target size.

The second pass is SDEdit (Meng et al. 2022): ``strength`` is the fraction of the noise schedule
that is re-entered. The pass uses a grid of ``round(steps / strength)`` steps of the same sampler
and spacing and runs its last ``steps`` of them, so it costs exactly ``steps`` steps and
``strength = 1`` restarts from the top of the schedule (pure noise under zero terminal SNR).

``upscaler="sr"`` hands the second pass to a super-resolution model (:class:`SRStage`, trained with
``sr.enabled=true``; :mod:`mjexp.diffusion.superres`): the base images, bicubically upsampled
and noise-augmented at ``noise_aug`` with the items' own noise stream (stage 2), become its
conditioning image; the pass starts, as with interpolation, from the bicubic upscale re-noised to
``strength``, and runs the SR model's denoiser (its own schedule, parameterisation and text
conditioning). ``strength = 1`` is super-resolution from pure noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Literal

import torch
import torch.nn.functional as F

from mjexp.autoencoder.codec import LatentCodec
from mjexp.diffusion.schedules import NoiseSchedule, SamplingSigmas
from mjexp.diffusion.superres import SuperResolution, noise_augment, upsample_condition
from mjexp.sampling.denoiser import Cond, Denoiser
from mjexp.sampling.guidance import Guidance
from mjexp.sampling.noise import ItemNoise
from mjexp.sampling.samplers import (
    SampleResult,
    SamplerSettings,
    noised_state,
    sample,
    sample_from,
)

UpscaleMode = Literal["nearest", "bilinear", "bicubic"]
HiresSpace = Literal["latent", "pixel"]
SPACES = ("latent", "pixel")
Upscaler = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]
"""``upscaler(images (B, C, h, w), (H, W)) -> images (B, C, H, W)``: any resizing function."""

SR = "sr"  # the upscaler value that runs the second pass with a super-resolution model
UPSCALERS = ("nearest", "bilinear", "bicubic", SR)
HIRES_STAGE = 1  # noise stream of the second pass (the base pass is stage 0)
SR_CONDITION_STAGE = 2  # noise stream of the SR model's conditioning augmentation


@dataclass(frozen=True)
class HiresSettings:
    """``enabled=False`` makes :func:`hires_fix` exactly plain sampling. ``guidance_scale=None``
    keeps the base guidance scale for the second pass. ``noise_aug``: the SR model's conditioning
    augmentation level (``upscaler="sr"`` only); ``None`` uses the level the model recorded."""

    enabled: bool = False
    scale: float = 2.0
    upscaler: UpscaleMode | Literal["sr"] | Upscaler = "bicubic"
    strength: float = 0.1
    steps: int = 10
    guidance_scale: float | None = None
    noise_aug: float | None = None
    # A latent model's upscale: of the latents ("latent"), or decode, upscale the pixels and encode
    # the posterior mean ("pixel"); both are offered by the tools people use. Pixel models ignore it.
    space: HiresSpace = "latent"

    def __post_init__(self) -> None:
        if not self.scale >= 1:
            raise ValueError(f"hires.scale must be >= 1, got {self.scale}")
        if not callable(self.upscaler) and self.upscaler not in UPSCALERS:
            raise ValueError(
                f"unknown hires.upscaler {self.upscaler!r}; choose {', '.join(UPSCALERS)} or pass a callable"
            )
        if not 0 < self.strength <= 1:
            raise ValueError(f"hires.strength must be in (0, 1], got {self.strength}")
        if self.steps < 1:
            raise ValueError(f"hires.steps must be >= 1, got {self.steps}")
        if self.guidance_scale is not None and not self.guidance_scale >= 0:
            raise ValueError(f"hires.guidance_scale must be >= 0, got {self.guidance_scale}")
        if self.space not in SPACES:
            raise ValueError(f"hires.space={self.space!r} is not one of {', '.join(SPACES)}")
        if self.noise_aug is not None and not 0 <= self.noise_aug <= 1:
            raise ValueError(f"hires.noise_aug must be in [0, 1], got {self.noise_aug}")

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        return round(height * self.scale), round(width * self.scale)

    def second_guidance(self, guidance: Guidance) -> Guidance:
        """The second pass's guidance: the base one with ``guidance_scale`` when that is set."""
        return guidance if self.guidance_scale is None else replace(guidance, scale=self.guidance_scale)

    @property
    def uses_sr(self) -> bool:
        """Whether the second pass runs a super-resolution model (``hires.model``)."""
        return self.enabled and self.upscaler == SR


@dataclass(frozen=True)
class SRStage:
    """The super-resolution model for one batch: its denoiser, its own text conditioning of the
    batch's prompts (``cond``/``uncond`` without the image, which :func:`hires_fix` adds) and
    what it was trained for (``model``: ratio and recorded ``noise_aug``)."""

    denoiser: Denoiser
    cond: Cond
    uncond: Cond | None
    model: SuperResolution


def check_sr_model(hires: HiresSettings, model: SuperResolution | None) -> None:
    """Refuse ``upscaler="sr"`` without a super-resolution model, or at a scale it was not trained for."""
    if not hires.uses_sr:
        return
    if model is None:
        raise ValueError(
            "hires.upscaler=sr needs a super-resolution model: set hires.model=<export folder, .ckpt or "
            "mlflow:<run_id>> of a model trained with sr.enabled=true (e.g. +experiment=train_sr)"
        )
    if not math.isclose(hires.scale, model.ratio, rel_tol=1e-6):
        raise ValueError(
            f"hires.scale={hires.scale} does not match the super-resolution model, which upsamples "
            f"{model.low_resolution} -> {model.resolution} px; set hires.scale={model.ratio:g}"
        )


def sr_condition(
    base_images: torch.Tensor, size: tuple[int, int], level: float, noise: torch.Tensor
) -> dict[str, torch.Tensor]:
    """An SR model's ``image`` and ``noise_level`` inputs for base-stage images: clamped to the
    data range it was trained on, bicubically upsampled to ``size`` and noise-augmented at ``level``."""
    image = upsample_condition(base_images.clamp(-1, 1), size)
    levels = torch.full((len(image),), level, dtype=image.dtype, device=image.device)
    return {"image": noise_augment(image, levels, noise), "noise_level": levels}


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
    sr: SRStage | None = None,
    codec: LatentCodec | None = None,
) -> SampleResult:
    """Two-stage generation; the result keeps the base images and sums both stages' costs.

    ``codec``: a latent model's autoencoder, which ``hires.space="pixel"`` upscales through.

    ``sr`` is used only when ``hires.upscaler="sr"`` (which needs it); other upscalers run the
    second pass with ``denoiser``, so one setup can compare both on the same noise.
    """
    base = sample(denoiser, noise, cond, uncond, sampler=sampler, guidance=guidance)
    if not hires.enabled:
        return base
    size = hires.target_size(*base.images.shape[-2:])
    shape = (base.images.shape[1], *size)
    if hires.upscaler == SR:
        check_sr_model(hires, None if sr is None else sr.model)
        level = sr.model.noise_aug if hires.noise_aug is None else hires.noise_aug
        image = sr_condition(base.images, size, level, noise.at_stage(SR_CONDITION_STAGE, shape).initial())
        denoiser = sr.denoiser
        cond = {**sr.cond, **image}
        uncond = None if sr.uncond is None else {**sr.uncond, **image}
        upscaled = upsample_condition(base.images, size)
    elif codec is not None and hires.space == "pixel":
        pixels = codec.decode(base.images.float())
        target = (size[0] * codec.factor, size[1] * codec.factor)
        upscaled = codec.encode(upscale(pixels, target, hires.upscaler)).to(base.images.dtype)
    else:
        upscaled = upscale(base.images, size, hires.upscaler)
    second = replace(sampler, steps=hires.steps)
    grid = renoise_grid(denoiser.schedule, second, hires.strength)
    hires_noise = noise.at_stage(HIRES_STAGE, shape)
    x = noised_state(upscaled, hires_noise.initial(), float(grid.sigmas[0]))
    final = sample_from(
        denoiser, x, grid, hires_noise.steps(grid.sigmas, second.noise), cond, uncond,
        sampler=second, guidance=hires.second_guidance(guidance),
    )
    return SampleResult(
        images=final.images,
        nfe=base.nfe + final.nfe,
        network_evals=base.network_evals + final.network_evals,
        base_images=base.images,
    )
