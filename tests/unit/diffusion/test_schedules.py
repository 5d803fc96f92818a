"""Noise schedules against closed forms and diffusers' schedulers (independent implementation)."""

import math

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from mjexp.diffusion.schedules import NoiseSchedule, ScheduleSettings

DIFFUSERS_NAMES = {"linear": "linear", "scaled_linear": "scaled_linear", "cosine": "squaredcos_cap_v2", "sigmoid": "sigmoid"}
BETAS = {"scaled_linear": (0.00085, 0.012)}


def make(kind: str, resolution: int | None = None, **kw) -> NoiseSchedule:
    start, end = BETAS.get(kind, (1e-4, 0.02))
    return NoiseSchedule(ScheduleSettings(kind, 1000, start, end, **kw), resolution)


@pytest.mark.parametrize("kind", list(DIFFUSERS_NAMES))
@pytest.mark.parametrize("zero_snr", [False, True])
def test_alphas_cumprod_match_diffusers(kind: str, zero_snr: bool) -> None:
    ours = make(kind, zero_terminal_snr=zero_snr)
    start, end = BETAS.get(kind, (1e-4, 0.02))
    theirs = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule=DIFFUSERS_NAMES[kind], beta_start=start, beta_end=end,
        rescale_betas_zero_snr=zero_snr,
    )
    # diffusers computes in float32; 1e-6 is its rounding, not ours.
    np.testing.assert_allclose(ours.alphas_cumprod.numpy(), theirs.alphas_cumprod.double().numpy(), atol=2e-6)


def test_linear_closed_form() -> None:
    s = make("linear")
    betas = np.linspace(1e-4, 0.02, 1000)
    np.testing.assert_allclose(s.alphas_cumprod.numpy(), np.cumprod(1 - betas), rtol=1e-12)
    np.testing.assert_allclose(s.betas.numpy(), betas, rtol=1e-9)


def test_cosine_closed_form_before_clipping() -> None:
    s = make("cosine")
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in [0, 10, 500, 900]:
        assert s.alphas_cumprod[t].item() == pytest.approx(f((t + 1) / 1000) / f(0), rel=1e-10)


def test_zero_terminal_snr_properties() -> None:
    s = make("linear", zero_terminal_snr=True)
    assert s.alphas_cumprod[-1].item() == 0.0
    assert math.isinf(s.sigma_max)
    assert s.alphas_cumprod[0].item() == pytest.approx(make("linear").alphas_cumprod[0].item(), rel=1e-12)
    assert torch.isfinite(torch.tensor(s.sigma_max_finite))


def test_snr_shift_multiplies_snr_by_the_squared_resolution_ratio() -> None:
    base, shifted = make("cosine", resolution=32), make("cosine", resolution=32, snr_shift_base_resolution=16)
    t = torch.tensor([0.0, 100.0, 500.0, 990.0])
    torch.testing.assert_close(shifted.snr(t), 0.25 * base.snr(t), rtol=1e-9, atol=0)
    with pytest.raises(ValueError, match="schedule.snr_shift_base_resolution=16 needs the data's resolution"):
        make("cosine", snr_shift_base_resolution=16)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [1, 10, 37, 1000])
def test_timesteps_match_diffusers(spacing: str, steps: int) -> None:
    theirs = DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing, steps_offset=0)
    theirs.set_timesteps(steps)
    assert make("linear").timesteps(steps, spacing).long().tolist() == theirs.timesteps.tolist()


def test_sigma_t_roundtrip_and_interpolation() -> None:
    s = make("scaled_linear")
    t = torch.linspace(0, 999, 777, dtype=torch.float64)
    torch.testing.assert_close(s.sigma_to_t(s.t_to_sigma(t)), t, atol=1e-9, rtol=0)
    # Integer timesteps give the table exactly; half steps the geometric mean of neighbours.
    assert s.t_to_sigma(torch.tensor(42.0)).item() == s.sigmas[42].item()
    mid = s.t_to_sigma(torch.tensor(42.5)).item()
    assert mid == pytest.approx(math.sqrt(s.sigmas[42].item() * s.sigmas[43].item()), rel=1e-12)


def test_sigma_to_t_with_infinite_sigma() -> None:
    s = make("linear", zero_terminal_snr=True)
    assert s.sigma_to_t(float("inf")).item() == 999.0
    assert math.isinf(s.t_to_sigma(999.0).item())
    assert s.sigma_to_t(s.t_to_sigma(998.0)).item() == pytest.approx(998.0)


def test_sampling_sigmas_end_at_zero_and_descend() -> None:
    for karras in (False, True):
        grid = make("linear", zero_terminal_snr=True).sampling_sigmas(12, "trailing", karras=karras)
        assert grid.sigmas[-1].item() == 0.0 and len(grid.sigmas) == 13 and grid.steps == 12
        finite = grid.sigmas[torch.isfinite(grid.sigmas)]
        assert (finite[1:] < finite[:-1]).all()


def test_karras_sigmas_closed_form() -> None:
    s = make("linear")
    grid = s.sampling_sigmas(5, karras=True, rho=7.0)
    lo, hi = s.sigma_min, s.sigma_max
    expected = [(hi ** (1 / 7) + i / 4 * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7 for i in range(5)]
    np.testing.assert_allclose(grid.sigmas[:-1].numpy(), expected, rtol=1e-12)
    torch.testing.assert_close(s.t_to_sigma(grid.timesteps), grid.sigmas[:-1], rtol=1e-9, atol=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "quadratic"}, "schedule.kind='quadratic' is not one of linear, scaled_linear, cosine, sigmoid"),
        ({"num_train_timesteps": 1}, "schedule.num_train_timesteps must be >= 2, got 1"),
        ({"beta_start": 0.1, "beta_end": 0.01}, "beta_start < beta_end"),
        ({"snr_shift_base_resolution": -1}, "schedule.snr_shift_base_resolution must be >= 0"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScheduleSettings(**kwargs)
