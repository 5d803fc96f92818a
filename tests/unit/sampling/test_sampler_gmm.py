"""Every sampler draws from the right distribution: a 2-D, 3-mode Gaussian mixture whose exact
denoiser is known in closed form stands in for a perfectly trained network.

Tolerance: each statistic (2 means, 3 covariance entries, 3 mode weights) must lie within 3
Monte-Carlo standard errors of its exact value (``GaussianMixture.z_scores`` derives the SEs from
the mixture's exact second and fourth moments). Step counts are "enough steps": chosen so
the sampler's discretisation bias is well below one SE at this sample size.
"""

from __future__ import annotations

import pytest
import torch

from mjexp.sampling.denoiser import Denoiser
from mjexp.testing.gaussian_mixture import reference_mixture
from mjexp.sampling.guidance import Guidance
from mjexp.sampling.samplers import SamplerSettings, initial_state, sample_from
from sampling_helpers import linear_schedule

MIXTURE = reference_mixture()
Z_MAX = 3.0


def draw(settings: SamplerSettings, parameterization: str, zero_terminal_snr: bool, n: int) -> torch.Tensor:
    schedule = linear_schedule(zero_terminal_snr)
    denoiser = Denoiser(MIXTURE.network(schedule, parameterization), schedule)  # type: ignore[arg-type]
    grid = settings.grid(schedule)
    init = torch.Generator().manual_seed(1)
    x = initial_state(torch.randn(n, 2, 1, 1, generator=init, dtype=torch.float64), float(grid.sigmas[0]))
    steps = torch.Generator().manual_seed(2)
    noise = lambda k: torch.randn(n, 2, 1, 1, generator=steps, dtype=torch.float64)  # noqa: E731
    result = sample_from(denoiser, x, grid, noise, {}, None, sampler=settings, guidance=Guidance(scale=1.0))
    assert result.nfe >= settings.steps and result.network_evals == result.nfe  # scale 1: cond only
    return result.images.reshape(n, 2)


def assert_matches_mixture(samples: torch.Tensor) -> None:
    for name, z in MIXTURE.z_scores(samples).items():
        assert z.abs().max() < Z_MAX, f"{name} off by {z.tolist()} standard errors"


# Ancestral samplers need many steps: with skipped timesteps the DDPM posterior variance is too
# small and the samples are under-dispersed (Bao et al. 2022, "Analytic-DPM"), an O(1/steps) bias.
FAST = [
    (SamplerSettings("ddpm", 1000), "eps", False),
    (SamplerSettings("ddim", 1000, eta=0.5), "eps", False),
    (SamplerSettings("euler", 500), "eps", False),
    (SamplerSettings("euler_ancestral", 1000), "eps", False),
    (SamplerSettings("heun", 50), "eps", False),
    (SamplerSettings("dpmpp_2m", 25), "eps", False),
    (SamplerSettings("dpmpp_2m", 25), "v", False),
    (SamplerSettings("dpmpp_2m_sde", 25), "eps", False),
    (SamplerSettings("dpmpp_2m_sde", 25, eta=0.5), "x0", False),
    (SamplerSettings("heun", 50), "x0", False),
    # Zero terminal SNR: the first step starts from pure noise at sigma = inf.
    (SamplerSettings("ddpm", 1000), "v", True),
    (SamplerSettings("dpmpp_2m", 25), "v", True),
    (SamplerSettings("dpmpp_2m_sde", 25), "v", True),
    (SamplerSettings("heun", 50), "x0", True),
    (SamplerSettings("euler", 500), "x0", True),
]


FAST_IDS = [f"{s.name}-eta{s.resolved_eta:g}-{s.steps}steps-{p}{'-ztsnr' if z else ''}" for s, p, z in FAST]


@pytest.mark.parametrize(("settings", "parameterization", "zero_terminal_snr"), FAST, ids=FAST_IDS)
def test_sampler_matches_mixture(
    settings: SamplerSettings, parameterization: str, zero_terminal_snr: bool
) -> None:
    assert_matches_mixture(draw(settings, parameterization, zero_terminal_snr, n=5_000))


SLOW_STEPS = {"ddpm": 1000, "ddim": 1000, "euler": 1000, "euler_ancestral": 1000, "heun": 100, "dpmpp_2m": 50,
              "dpmpp_2m_sde": 50}
SLOW_VARIANTS = [("eps", False, False), ("v", True, False), ("x0", False, True)]  # (param, ZT-SNR, karras)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW_STEPS))
@pytest.mark.parametrize(("parameterization", "zero_terminal_snr", "karras"), SLOW_VARIANTS)
def test_sampler_matches_mixture_full(
    name: str, parameterization: str, zero_terminal_snr: bool, karras: bool
) -> None:
    settings = SamplerSettings(name, SLOW_STEPS[name], karras=karras)  # type: ignore[arg-type]
    assert_matches_mixture(draw(settings, parameterization, zero_terminal_snr, n=20_000))


def test_a_biased_sampler_fails() -> None:
    """The check has power: Euler with too few steps is caught."""
    samples = draw(SamplerSettings("euler", 10), "eps", False, n=5_000)
    with pytest.raises(AssertionError, match="standard errors"):
        assert_matches_mixture(samples)
