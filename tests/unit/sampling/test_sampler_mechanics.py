"""Sampler mechanics against hand-computed steps: the ancestral update, the zero-SNR first step,
the final denoising step, call counts, the sigma -> timestep binding and argument validation."""

from __future__ import annotations

import math
from typing import get_args

import pytest
import torch

from mjexp.diffusion.parameterization import Predictions
from mjexp.sampling.denoiser import Denoiser
from mjexp.sampling.guidance import Guidance, GuidedDenoiser
from mjexp.sampling.samplers import (
    SAMPLERS,
    SamplerName,
    SamplerSettings,
    StepInfo,
    ancestral_sigmas,
    initial_state,
    noised_state,
    on_grid,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_dpmpp_2m_sde,
    sample_euler,
    sample_heun,
)
from sampling_helpers import ToyNetwork, linear_schedule


class LinearModel:
    """x0 = 0.5 x / (1 + sigma) + 0.1 (a smooth toy denoiser); counts calls."""

    def __init__(self) -> None:
        self.sigmas: list[float] = []

    def __call__(self, x: torch.Tensor, sigma: float) -> Predictions:
        self.sigmas.append(sigma)
        x0 = (0.5 * x if math.isinf(sigma) else 0.5 * x / (1 + sigma)) + 0.1
        eps = x if math.isinf(sigma) else (x - x0) / sigma
        return Predictions(x0=x0, eps=eps)


X = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
Z = torch.randn(4, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_ancestral_split_is_ddim_eq16() -> None:
    sigma, nxt, eta = 3.0, 1.2, 0.6
    down, up = ancestral_sigmas(sigma, nxt, eta)
    # DDIM Eq. 16 in VP units (a = alpha_bar):
    # sigma_t = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev)
    a_t, a_prev = 1 / (1 + sigma**2), 1 / (1 + nxt**2)
    sigma_vp = eta * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(1 - a_t / a_prev)
    assert up == pytest.approx(sigma_vp / math.sqrt(a_prev))  # VE = VP / sqrt(alpha_bar_prev)
    assert down**2 + up**2 == pytest.approx(nxt**2)
    assert ancestral_sigmas(math.inf, nxt, eta) == pytest.approx((nxt * math.sqrt(1 - eta**2), eta * nxt))
    assert ancestral_sigmas(sigma, 0.0, 1.0) == (0.0, 0.0)


def test_one_ancestral_step_by_hand() -> None:
    model = LinearModel()
    out = sample_ddim(model, X, [3.0, 1.2], eta=0.6, noise=lambda k: Z)
    pred = LinearModel()(X, 3.0)
    down, up = ancestral_sigmas(3.0, 1.2, 0.6)
    torch.testing.assert_close(out, pred.x0 + down * pred.eps + up * Z)
    torch.testing.assert_close(sample_euler(LinearModel(), X, [3.0, 1.2]), X + (1.2 - 3.0) * pred.eps)


def test_ancestral_step_from_infinity_is_fresh_noise() -> None:
    """DDPM at zero SNR: the posterior mean ignores x_T entirely (Lin et al. 2024, Sec. 3.3)."""
    pred = LinearModel()(X, math.inf)
    torch.testing.assert_close(
        sample_ddpm(LinearModel(), X, [math.inf, 2.0], noise=lambda k: Z), pred.x0 + 2.0 * Z
    )


@pytest.mark.parametrize("sampler", [sample_heun, sample_dpmpp_2m, sample_euler])
def test_first_step_from_infinity_is_the_ddim_step(sampler) -> None:  # noqa: ANN001
    steps: list[StepInfo] = []
    sampler(LinearModel(), X, [math.inf, 2.0, 0.5, 0.0], callback=steps.append)
    pred = LinearModel()(X, math.inf)
    torch.testing.assert_close(steps[0].x, pred.x0 + 2.0 * pred.eps)
    assert [(s.index, s.sigma, s.sigma_next) for s in steps] == [
        (0, math.inf, 2.0),
        (1, 2.0, 0.5),
        (2, 0.5, 0.0),
    ]


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_final_step_returns_the_denoised_prediction(name: str) -> None:
    model = LinearModel()
    out = SamplerSettings(name).run(model, X, [5.0, 1.0, 0.3, 0.0], noise=lambda k: Z)  # type: ignore[arg-type]
    steps: list[StepInfo] = []
    SamplerSettings(name).run(
        LinearModel(), X, [5.0, 1.0, 0.3, 0.0], noise=lambda k: Z, callback=steps.append
    )  # type: ignore[arg-type]
    torch.testing.assert_close(out, steps[-1].x0)
    assert model.sigmas[-1] == 0.3


@pytest.mark.parametrize(
    ("name", "sigmas", "calls"),
    [
        ("heun", [5.0, 1.0, 0.3, 0.0], 5),  # 2 per step, 1 into zero
        ("heun", [math.inf, 5.0, 1.0, 0.3, 0.0], 6),  # the step from infinity is first order
        ("dpmpp_2m", [5.0, 1.0, 0.3, 0.0], 3),
        ("euler", [math.inf, 1.0, 0.0], 2),
    ],
)
def test_model_calls(name: str, sigmas: list[float], calls: int) -> None:
    model = LinearModel()
    SAMPLERS[name](model, X, sigmas)
    assert len(model.sigmas) == calls
    assert set(model.sigmas) <= set(sigmas)  # every call lands on the grid


def test_dpmpp_2m_second_order_step_by_hand() -> None:
    s = [4.0, 1.5, 0.6]
    first = LinearModel()(X, s[0])
    x1 = (s[1] / s[0]) * X - math.expm1(-math.log(s[0] / s[1])) * first.x0
    second = LinearModel()(x1, s[1])
    h, h_last = math.log(s[1] / s[2]), math.log(s[0] / s[1])
    r = h_last / h
    d = (1 + 1 / (2 * r)) * second.x0 - 1 / (2 * r) * first.x0
    expected = (s[2] / s[1]) * x1 - math.expm1(-h) * d
    torch.testing.assert_close(sample_dpmpp_2m(LinearModel(), X, s), expected)


def test_dpmpp_2m_sde_steps_by_hand() -> None:
    """A first-order step, then a second-order one, with eta = 0.7: the state decays by
    ``e^(-eta h)``, the x0 extrapolation is weighted by ``1 - e^(-(1 + eta) h)`` and the fresh
    noise has std ``sigma_next sqrt(1 - e^(-2 eta h))`` (the SDE step of Lu et al. 2022b)."""
    s, eta = [4.0, 1.5, 0.6], 0.7
    z1, z2 = Z, torch.flip(Z, dims=[0])
    first = LinearModel()(X, s[0])
    h0 = math.log(s[0] / s[1])
    x1 = (s[1] / s[0]) * math.exp(-eta * h0) * X + (1 - math.exp(-(1 + eta) * h0)) * first.x0
    x1 = x1 + s[1] * math.sqrt(1 - math.exp(-2 * eta * h0)) * z1
    second = LinearModel()(x1, s[1])
    h1 = math.log(s[1] / s[2])
    d = second.x0 + 0.5 * (h1 / h0) * (second.x0 - first.x0)
    expected = (s[2] / s[1]) * math.exp(-eta * h1) * x1 + (1 - math.exp(-(1 + eta) * h1)) * d
    expected = expected + s[2] * math.sqrt(1 - math.exp(-2 * eta * h1)) * z2
    out = sample_dpmpp_2m_sde(LinearModel(), X, s, eta=eta, noise=lambda k: [z1, z2][k])
    torch.testing.assert_close(out, expected)


def test_dpmpp_2m_sde_at_eta_zero_is_dpmpp_2m() -> None:
    s = [math.inf, 6.0, 2.0, 0.7, 0.2, 0.0]
    torch.testing.assert_close(
        sample_dpmpp_2m_sde(LinearModel(), X, s, eta=0.0, noise=lambda k: Z), sample_dpmpp_2m(LinearModel(), X, s)
    )


@pytest.mark.parametrize("eta", [0.3, 1.0])
def test_dpmpp_2m_sde_step_from_infinity_is_fresh_noise(eta: float) -> None:
    """At zero SNR ``e^(-eta h) = 0`` for any eta > 0: the first step keeps nothing of x_T."""
    steps: list[StepInfo] = []
    sample_dpmpp_2m_sde(LinearModel(), X, [math.inf, 2.0, 0.0], eta=eta, noise=lambda k: Z, callback=steps.append)
    torch.testing.assert_close(steps[0].x, LinearModel()(X, math.inf).x0 + 2.0 * Z)


def test_states() -> None:
    n = torch.ones(2)
    torch.testing.assert_close(initial_state(n, 3.0), n * math.sqrt(10.0))
    assert initial_state(n, math.inf) is n
    torch.testing.assert_close(noised_state(n, 2 * n, 0.5), 2 * n)
    assert noised_state(n, 2 * n, math.inf).eq(2).all()


def test_grid_timesteps_reach_the_network_exactly() -> None:
    seen: list[torch.Tensor] = []

    class Spy(ToyNetwork):
        def __call__(self, x: torch.Tensor, t: torch.Tensor, **cond: object) -> torch.Tensor:
            seen.append(t)
            return super().__call__(x, t)

    schedule = linear_schedule()
    grid = SamplerSettings("heun", 7, "leading").grid(schedule)
    guided = GuidedDenoiser(Denoiser(Spy("eps"), schedule), {}, None, Guidance(scale=1.0))
    sample_heun(on_grid(guided, grid), torch.randn(2, 3), grid.sigmas)
    got = sorted({float(t[0]) for t in seen})
    assert got == sorted(grid.timesteps.tolist()) and all(v == int(v) for v in got)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "lms"}, "sampler.name='lms' is not one of"),
        ({"steps": 0}, "steps must be >= 1"),
        ({"spacing": "uniform"}, "sampler.spacing='uniform' is not one of leading, trailing, linspace"),
        ({"name": "ddim", "eta": -0.1}, r"eta must be in \[0, 1\]"),
        ({"name": "euler", "eta": 0.5}, "fixed eta=0.0"),
        ({"name": "ddpm", "eta": 0.0}, "fixed eta=1.0"),
        ({"name": "dpmpp_2m_sde", "eta": 1.5}, r"eta must be in \[0, 1\]"),
        ({"rho": 0.0}, "rho must be > 0"),
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SamplerSettings(**kwargs)


def test_sampler_name_type_lists_every_sampler() -> None:
    """``SamplerName`` (the type) and ``SAMPLERS`` (the registry the config validates against)
    must name the same samplers, in the same order."""
    assert get_args(SamplerName) == tuple(SAMPLERS)


def test_config_style_eta_is_accepted() -> None:
    """Configs may spell out each sampler's own eta (0 for deterministic ones, 1 for DDPM)."""
    assert SamplerSettings("heun", eta=0.0).resolved_eta == 0.0
    assert SamplerSettings("ddpm", eta=1.0).resolved_eta == 1.0
    assert (
        SamplerSettings("ddim").resolved_eta == 0.0 and SamplerSettings("euler_ancestral").resolved_eta == 1.0
    )


@pytest.mark.parametrize("sigmas", [[1.0], [1.0, 2.0], [2.0, 2.0, 0.0], [1.0, -0.5], [1.0, math.inf]])
def test_invalid_sigmas_are_rejected(sigmas: list[float]) -> None:
    with pytest.raises(ValueError, match="sigma"):
        sample_euler(LinearModel(), X, sigmas)


def test_eta_out_of_range_is_rejected_by_the_function() -> None:
    with pytest.raises(ValueError, match="eta must be in"):
        sample_ddim(LinearModel(), X, [1.0, 0.0], eta=1.5)
