"""Property tests (hypothesis) of the schedule and sampler-argument contracts, over all settings."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mjexp.diffusion.schedules import NoiseSchedule, ScheduleSettings
from mjexp.sampling.samplers import DEFAULT_ETA, SAMPLERS, SamplerSettings

FAST = settings(max_examples=40, deadline=None)


@st.composite
def schedules(draw: st.DrawFn, zero_terminal_snr: bool | None = None) -> NoiseSchedule:
    beta_start = draw(st.floats(1e-5, 1e-2))
    settings = ScheduleSettings(
        kind=draw(st.sampled_from(["linear", "scaled_linear", "cosine", "sigmoid"])),
        num_train_timesteps=draw(st.integers(2, 2000)),
        beta_start=beta_start,
        beta_end=draw(st.floats(beta_start * 1.01, 0.05)),
        zero_terminal_snr=draw(st.booleans()) if zero_terminal_snr is None else zero_terminal_snr,
        snr_shift_base_resolution=draw(st.just(0) | st.integers(6, 50)),  # at 16 px: SNR x 0.14 .. 9.8
    )
    return NoiseSchedule(settings, resolution=16)


@FAST
@given(schedules())
def test_alphas_cumprod_strictly_decrease_within_0_1(schedule: NoiseSchedule) -> None:
    a = schedule.alphas_cumprod
    assert a.dtype == torch.float64
    assert (a[1:] < a[:-1]).all()
    assert (a <= 1).all()
    if schedule.zero_terminal_snr:
        assert a[-1] == 0 and (a[:-1] > 0).all()
    else:
        assert (a > 0).all()


@FAST
@given(schedules(), st.lists(st.floats(0, 1), min_size=2, max_size=20))
def test_snr_decreases_in_continuous_t(schedule: NoiseSchedule, fractions: list[float]) -> None:
    last = schedule.num_train_timesteps - 1
    t = torch.tensor(sorted(set(fractions)), dtype=torch.float64) * last
    t = torch.unique(t)
    assume(len(t) >= 2)
    snr = schedule.snr(t)
    assert (snr[1:] <= snr[:-1]).all()  # monotone; strictly so wherever t differs by more than rounding
    # (and before SNR reaches 0, which under zero-terminal SNR it does on the whole last interval)
    apart = ((t[1:] - t[:-1]) > 1e-6) & (snr[:-1] > 0)
    assert (snr[1:][apart] < snr[:-1][apart]).all()
    integer = schedule.snr(torch.arange(last + 1, dtype=torch.float64))
    assert (integer[1:] < integer[:-1]).all()


@FAST
@given(schedules(), st.floats(0, 1))
def test_timestep_and_sigma_conversions_invert_each_other(schedule: NoiseSchedule, fraction: float) -> None:
    """Everywhere sigma is finite: [0, T-1], or [0, T-2] plus the infinite end under zero-terminal SNR
    (log-sigma interpolation towards an infinite endpoint is infinite on the whole last interval)."""
    last = schedule.num_train_timesteps - 1
    finite_last = last - 1 if schedule.zero_terminal_snr else last
    t = torch.tensor(fraction * finite_last, dtype=torch.float64)
    assert torch.allclose(schedule.sigma_to_t(schedule.t_to_sigma(t)), t, rtol=0, atol=1e-6 * max(1, last))
    s = torch.tensor(schedule.sigma_min * (schedule.sigma_max_finite / schedule.sigma_min) ** fraction, dtype=torch.float64)
    assert torch.allclose(schedule.t_to_sigma(schedule.sigma_to_t(s)), s, rtol=1e-9)
    if schedule.zero_terminal_snr:
        assert math.isinf(schedule.t_to_sigma(last)) and schedule.sigma_to_t(math.inf) == last


@FAST
@given(schedules(), st.data())
def test_sampling_grids_descend_to_zero(schedule: NoiseSchedule, data: st.DataObject) -> None:
    steps = data.draw(st.integers(1, schedule.num_train_timesteps))
    spacing = data.draw(st.sampled_from(["leading", "trailing", "linspace"]))
    timesteps = schedule.timesteps(steps, spacing)
    assert len(timesteps) == steps and len(torch.unique(timesteps)) == steps
    assert (timesteps[1:] < timesteps[:-1]).all() and timesteps.min() >= 0 and timesteps.max() <= schedule.num_train_timesteps - 1
    karras = data.draw(st.booleans())
    assume(not karras or schedule.sigma_min < schedule.sigma_max_finite)  # T=2 with zero-terminal SNR: one finite sigma
    grid = schedule.sampling_sigmas(steps, spacing, karras=karras)
    assert len(grid.sigmas) == steps + 1 and grid.sigmas[-1] == 0
    assert (grid.sigmas[1:] < grid.sigmas[:-1]).all() or steps == 1


@FAST
@given(schedules(), st.integers(-5, 0) | st.integers(1, 50))
def test_timesteps_outside_1_T_are_rejected(schedule: NoiseSchedule, offset: int) -> None:
    steps = offset if offset <= 0 else schedule.num_train_timesteps + offset
    with pytest.raises(ValueError, match=rf"steps must be in \[1, {schedule.num_train_timesteps}\], got {steps}"):
        schedule.timesteps(steps)


@settings(max_examples=80, deadline=None)
@given(
    name=st.sampled_from(sorted(SAMPLERS)) | st.text(min_size=1, max_size=8),
    steps=st.integers(-3, 60),
    spacing=st.sampled_from(["leading", "trailing", "linspace"]) | st.text(max_size=8),
    rho=st.floats(-2, 12, allow_nan=False),
    eta=st.none() | st.floats(-1, 2, allow_nan=False),
    noise=st.sampled_from(["independent", "brownian"]) | st.text(max_size=8),
)
def test_sampler_arguments_are_validated(
    name: str, steps: int, spacing: str, rho: float, eta: float | None, noise: str
) -> None:
    valid = (
        name in SAMPLERS
        and steps >= 1
        and spacing in ("leading", "trailing", "linspace")
        and rho > 0
        and noise in ("independent", "brownian")
        and (eta is None or (0 <= eta <= 1 and (name in ("ddim", "euler_ancestral", "dpmpp_2m_sde") or eta == DEFAULT_ETA[name])))
    )
    if valid:
        settings_ = SamplerSettings(name, steps, spacing, rho=rho, eta=eta, noise=noise)
        assert settings_.resolved_eta == (DEFAULT_ETA[name] if eta is None else eta)
    else:
        with pytest.raises(ValueError, match=r"sampler|steps|spacing|rho|eta"):
            SamplerSettings(name, steps, spacing, rho=rho, eta=eta, noise=noise)


@pytest.mark.parametrize("steps", [61, 103, 201, 499])
def test_trailing_spacing_never_yields_timestep_minus_one(steps: int) -> None:
    """Found by the property above: ``arange(T, 0, -T/steps)`` gives steps + 1 values for these
    counts at T=1000 (in diffusers too), the last being timestep -1, i.e. sigma_max at the end."""
    timesteps = NoiseSchedule().timesteps(steps, "trailing")
    assert len(timesteps) == steps and timesteps.min() >= 0 and timesteps.max() == 999
