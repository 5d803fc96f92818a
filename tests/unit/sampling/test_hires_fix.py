"""Hires fix: disabled is plain sampling; enabled re-noises an upsampled base image part-way."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from mjexp.sampling.denoiser import Denoiser
from mjexp.sampling.guidance import Guidance
from mjexp.sampling.hires import HIRES_STAGE, HiresSettings, hires_fix, renoise_grid, upscale
from mjexp.sampling.noise import ItemNoise
from mjexp.sampling.samplers import SamplerSettings, noised_state, sample, sample_from
from mjexp.text.base import TextEmbedding
from sampling_helpers import ToyNetwork, linear_schedule


class TextToyNetwork(ToyNetwork):
    def __call__(self, x: torch.Tensor, t: torch.Tensor, **cond: object) -> torch.Tensor:
        text = cond["text"]
        assert isinstance(text, TextEmbedding)
        return super().__call__(x, t) + 0.1 * text.pooled[:, :1, None, None]


def setup(zero_snr: bool = False) -> tuple[Denoiser, ItemNoise, dict, dict]:
    denoiser = Denoiser(TextToyNetwork("v"), linear_schedule(zero_snr))  # type: ignore[arg-type]
    noise = ItemNoise.for_prompts(7, [0, 1], 1, (3, 4, 4))

    def text(value: float) -> TextEmbedding:
        return TextEmbedding(
            torch.zeros(2, 1, 4), torch.ones(2, 1, dtype=torch.bool), torch.full((2, 4), value)
        )

    return denoiser, noise, {"text": text(1.0)}, {"text": text(0.0)}


SAMPLER = SamplerSettings("euler_ancestral", 6)
GUIDANCE = Guidance(scale=2.0)


def test_disabled_is_exactly_plain_sampling() -> None:
    denoiser, noise, cond, uncond = setup()
    plain = sample(denoiser, noise, cond, uncond, sampler=SAMPLER, guidance=GUIDANCE)
    hires = hires_fix(
        denoiser, noise, cond, uncond, sampler=SAMPLER, guidance=GUIDANCE, hires=HiresSettings(enabled=False)
    )
    assert torch.equal(hires.images, plain.images)
    assert (hires.nfe, hires.network_evals, hires.base_images) == (plain.nfe, plain.network_evals, None)


def test_enabled_keeps_base_images_and_sums_costs() -> None:
    denoiser, noise, cond, uncond = setup()
    plain = sample(denoiser, noise, cond, uncond, sampler=SAMPLER, guidance=GUIDANCE)
    settings = HiresSettings(
        enabled=True, scale=2.0, upscaler="bilinear", strength=0.5, steps=4, guidance_scale=1.0
    )
    out = hires_fix(denoiser, noise, cond, uncond, sampler=SAMPLER, guidance=GUIDANCE, hires=settings)
    assert out.images.shape == (2, 3, 8, 8)
    assert out.base_images is not None and torch.equal(out.base_images, plain.images)
    # Second pass: 4 steps at guidance scale 1 = one forward per call.
    assert (out.nfe, out.network_evals) == (plain.nfe + 4, plain.network_evals + 4)
    assert not torch.allclose(out.images, upscale(plain.images, (8, 8), "bilinear"))


def test_second_pass_walks_its_own_brownian_path() -> None:
    """With ``sampler.noise=brownian`` both passes take their step noise from Brownian paths; the
    second pass from the items' stage-1 path over its re-noising grid."""
    denoiser, noise, cond, uncond = setup()
    sampler = SamplerSettings("euler_ancestral", 6, noise="brownian")
    settings = HiresSettings(enabled=True, scale=2.0, upscaler="bilinear", strength=0.5, steps=4)
    out = hires_fix(denoiser, noise, cond, uncond, sampler=sampler, guidance=GUIDANCE, hires=settings)
    base = sample(denoiser, noise, cond, uncond, sampler=sampler, guidance=GUIDANCE)
    assert out.base_images is not None and torch.equal(out.base_images, base.images)
    second = replace(sampler, steps=4)
    grid = renoise_grid(denoiser.schedule, second, 0.5)
    stage = noise.at_stage(HIRES_STAGE, (3, 8, 8))
    x = noised_state(upscale(base.images, (8, 8), "bilinear"), stage.initial(), float(grid.sigmas[0]))
    steps = stage.steps(grid.sigmas, "brownian")
    expected = sample_from(denoiser, x, grid, steps, cond, uncond, sampler=second, guidance=GUIDANCE)
    assert torch.equal(out.images, expected.images)
    independent = replace(sampler, noise="independent")
    other = hires_fix(denoiser, noise, cond, uncond, sampler=independent, guidance=GUIDANCE, hires=settings)
    assert not torch.allclose(other.images, out.images)


def test_renoise_grid_is_the_tail_of_a_longer_grid() -> None:
    schedule = linear_schedule()
    settings = SamplerSettings("ddim", 10)
    assert torch.equal(renoise_grid(schedule, settings, 1.0).sigmas, settings.grid(schedule).sigmas)
    longer = SamplerSettings("ddim", 20).grid(schedule)
    tail = renoise_grid(schedule, settings, 0.5)
    assert torch.equal(tail.sigmas, longer.sigmas[10:]) and torch.equal(tail.timesteps, longer.timesteps[10:])
    # Strength is roughly the fraction of the training timesteps re-entered.
    assert float(tail.timesteps[0]) == pytest.approx(0.5 * 1000, abs=1000 / 20)


def test_full_strength_under_zero_terminal_snr_starts_from_pure_noise() -> None:
    denoiser, noise, cond, uncond = setup(zero_snr=True)
    settings = HiresSettings(enabled=True, scale=1.0, strength=1.0, steps=3)
    grid = renoise_grid(denoiser.schedule, SamplerSettings("euler", 3), 1.0)
    assert math.isinf(float(grid.sigmas[0]))
    out = hires_fix(
        denoiser, noise, cond, uncond, sampler=SamplerSettings("euler", 3), guidance=GUIDANCE, hires=settings
    )
    # The base image is forgotten entirely: same result as sampling from the hires noise stream.
    fresh = sample(
        denoiser,
        noise.at_stage(1, (3, 4, 4)),
        cond,
        uncond,
        sampler=SamplerSettings("euler", 3),
        guidance=GUIDANCE,
    )
    torch.testing.assert_close(out.images, fresh.images, rtol=0, atol=1e-6)


def test_upscalers() -> None:
    images = torch.arange(8.0).reshape(1, 2, 2, 2)
    nearest = upscale(images, (4, 4), "nearest")
    assert torch.equal(nearest[0, 0], images[0, 0].repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert upscale(images, (3, 5), "bicubic").shape == (1, 2, 3, 5)
    calls = []

    def super_resolution(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        calls.append(size)
        return upscale(x, size, "nearest") + 1

    assert torch.equal(upscale(images, (4, 4), super_resolution), nearest + 1) and calls == [(4, 4)]
    with pytest.raises(ValueError, match=r"upscaler returned shape \(1, 2, 2, 2\), expected \(1, 2, 4, 4\)"):
        upscale(images, (4, 4), lambda x, size: x)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strength": 0.0}, r"strength must be in \(0, 1\]"),
        ({"strength": 1.5}, r"strength must be in \(0, 1\]"),
        ({"scale": 0.5}, "scale must be >= 1"),
        ({"upscaler": "lanczos"}, "unknown hires.upscaler"),
        ({"steps": 0}, "steps must be >= 1"),
        ({"guidance_scale": -1.0}, "guidance_scale must be >= 0"),
        ({"space": "rgb"}, "hires.space='rgb' is not one of latent, pixel"),
    ],
)
def test_invalid_hires_settings_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HiresSettings(enabled=True, **kwargs)


class PoolingCodec:
    """A stand-in autoencoder with factor 2: decode repeats each latent pixel, encode averages."""

    factor = 2

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(latents, scale_factor=2, mode="nearest") + 0.5

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(images - 0.5, 2)


def test_pixel_space_upscales_the_decoded_image_and_encodes_it() -> None:
    denoiser, noise, cond, uncond = setup()
    codec = PoolingCodec()
    pixel = hires_fix(denoiser, noise, cond, uncond, sampler=SAMPLER, guidance=GUIDANCE, codec=codec,
                      hires=HiresSettings(enabled=True, strength=0.5, steps=3, space="pixel"))
    through_pixels = lambda x, size: codec.encode(upscale(codec.decode(x), (2 * size[0], 2 * size[1]), "bicubic"))  # noqa: E731
    expected = hires_fix(denoiser, noise, cond, uncond, sampler=SAMPLER, guidance=GUIDANCE,
                         hires=HiresSettings(enabled=True, strength=0.5, steps=3, upscaler=through_pixels))
    latent = hires_fix(denoiser, noise, cond, uncond, sampler=SAMPLER, guidance=GUIDANCE, codec=codec,
                       hires=HiresSettings(enabled=True, strength=0.5, steps=3, space="latent"))
    assert torch.equal(pixel.images, expected.images) and torch.equal(pixel.base_images, latent.base_images)
    assert not torch.equal(pixel.images, latent.images)
