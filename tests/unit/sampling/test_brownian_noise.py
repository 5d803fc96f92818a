"""Brownian-path step noise (``sampler.noise=brownian``): exact Brownian increments, the same path
at every step count, batch-invariant, and samplers driven by it still draw the right distribution."""

from __future__ import annotations

import math

import pytest
import torch

from mjexp.sampling.brownian import LEVELS, BrownianSteps, lattice_time
from mjexp.sampling.denoiser import Denoiser
from mjexp.testing.gaussian_mixture import reference_mixture
from mjexp.sampling.guidance import Guidance
from mjexp.sampling.noise import ItemNoise
from mjexp.sampling.samplers import SamplerSettings, sample
from sampling_helpers import linear_schedule

INF = math.inf
FINE = [INF, 10.0, 3.0, 1.0, 0.3, 0.1, 0.0]
COARSE = [INF, 3.0, 0.3, 0.0]  # coarse step 0 spans fine steps 0-1, coarse step 1 spans fine 2-3
INSIDE = {0: (0, 1), 1: (2, 3)}


def lattice_length(sigmas: list[float], k: int) -> float:
    return (lattice_time(sigmas[k]) - lattice_time(sigmas[k + 1])) / 2**LEVELS


def steps(noise: ItemNoise, sigmas: list[float]) -> list[torch.Tensor]:
    source = noise.steps(sigmas, "brownian")
    return [source(k) for k in range(len(sigmas) - 1)]


def test_lattice_time_is_the_vp_angle() -> None:
    assert lattice_time(INF) == 2**LEVELS and lattice_time(0.0) == 0
    assert lattice_time(1.0) == 2 ** (LEVELS - 1)  # arctan(1) = pi / 4: half way
    assert lattice_time(math.tan(math.pi / 8)) == 2 ** (LEVELS - 2)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        lattice_time(-1.0)


def test_coarse_step_is_the_sum_of_the_fine_steps_inside_it() -> None:
    """The same path at any step count: a coarse increment is exactly the fine increments' sum."""
    noise = ItemNoise.for_prompts(3, range(4), 2, (3, 2, 2), dtype=torch.float64)
    fine, coarse = steps(noise, FINE), steps(noise, COARSE)
    for c, (a, b) in INSIDE.items():
        summed = sum(fine[k] * math.sqrt(lattice_length(FINE, k)) for k in (a, b))
        torch.testing.assert_close(coarse[c] * math.sqrt(lattice_length(COARSE, c)), summed, rtol=0, atol=1e-12)


def test_increments_have_the_brownian_covariance() -> None:
    """Over 10,000 items: every step's noise is standard normal, disjoint steps are uncorrelated and
    a coarse step's noise correlates with a fine step inside it by sqrt(fine / coarse length)."""
    noise = ItemNoise.for_prompts(0, range(10_000), 1, (1,), dtype=torch.float64)
    fine = torch.stack([z.flatten() for z in steps(noise, FINE)[:5]])
    coarse = torch.stack([z.flatten() for z in steps(noise, COARSE)[:2]])
    n = fine.shape[1]
    se = 1 / math.sqrt(n)
    for z in (*fine, *coarse):
        assert abs(float(z.mean())) < 4 * se and abs(float(z.var()) - 1) < 4 * math.sqrt(2) * se
    fine_corr = torch.corrcoef(fine)
    off_diagonal = fine_corr[~torch.eye(len(fine), dtype=torch.bool)]
    assert off_diagonal.abs().max() < 4 * se
    for c in range(2):
        for k in range(5):
            expected = math.sqrt(lattice_length(FINE, k) / lattice_length(COARSE, c)) if k in INSIDE[c] else 0.0
            observed = float((coarse[c] * fine[k]).mean())
            assert abs(observed - expected) < 4 * se, (c, k, observed, expected)


def test_same_item_same_path_in_any_batch_and_query_order() -> None:
    items = [(i, j) for i in range(3) for j in range(2)]
    shape = (2, 3)

    def by_item(batch: list[tuple[int, int]], order: list[int]) -> dict[tuple[int, int], list[torch.Tensor]]:
        source = ItemNoise(5, tuple(batch), shape).steps(FINE, "brownian")
        draws = {k: source(k) for k in order}
        return {item: [draws[k][row] for k in range(5)] for row, item in enumerate(batch)}

    reference = by_item(items, list(range(5)))
    assert not torch.equal(reference[(0, 0)][0], reference[(0, 1)][0])
    for batch, order in [(items[::-1], [4, 0, 2, 1, 3]), (items[2:3], [3, 3, 0, 1, 2, 4]), (items[1:4], [1, 0, 4, 3, 2])]:
        for item, draws in by_item(batch, order).items():
            for k in range(5):
                assert torch.equal(draws[k], reference[item][k]), (item, k, batch, order)


@pytest.mark.parametrize("threads", [1, 4])
def test_draws_do_not_depend_on_the_thread_count(threads: int) -> None:
    """Items are walked in one chunk per torch thread; the chunking must not change a value."""
    source = ItemNoise(5, tuple((i, 0) for i in range(7)), (2, 3)).steps(FINE, "brownian")
    reference = [source(k) for k in range(3)]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        source = ItemNoise(5, tuple((i, 0) for i in range(7)), (2, 3)).steps(FINE, "brownian")
        assert all(torch.equal(source(k), reference[k]) for k in range(3))
    finally:
        torch.set_num_threads(before)


def test_paths_differ_between_seeds_stages_and_from_independent_noise() -> None:
    noise = ItemNoise(0, ((0, 0),), (16,), dtype=torch.float64)
    first = [
        steps(noise, FINE)[1],
        steps(ItemNoise(1, ((0, 0),), (16,), dtype=torch.float64), FINE)[1],
        steps(noise.at_stage(1, (16,)), FINE)[1],
        noise.steps(FINE)(1),  # independent
    ]
    for a in range(len(first)):
        for b in range(a):
            assert not torch.allclose(first[a], first[b]), (a, b)


def test_grid_finer_than_the_lattice_is_refused() -> None:
    with pytest.raises(ValueError, match="same Brownian lattice time"):
        BrownianSteps([(1, 2)], (1,), [1.0, 1.0 - 1e-9, 0.0])
    with pytest.raises(ValueError, match="unknown step noise"):
        ItemNoise(0, ((0, 0),), (1,)).steps(FINE, "pink")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is not one of independent, brownian"):
        SamplerSettings("dpmpp_2m_sde", noise="pink")  # type: ignore[arg-type]


MIXTURE = reference_mixture()


def mixture_samples(settings: SamplerSettings, n: int, zero_terminal_snr: bool = False) -> torch.Tensor:
    schedule = linear_schedule(zero_terminal_snr)
    parameterization = "v" if zero_terminal_snr else "eps"
    denoiser = Denoiser(MIXTURE.network(schedule, parameterization), schedule)  # type: ignore[arg-type]
    noise = ItemNoise.for_prompts(7, range(n), 1, (2, 1, 1), dtype=torch.float64)
    return sample(denoiser, noise, {}, None, sampler=settings, guidance=Guidance(scale=1.0)).images.reshape(n, 2)


@pytest.mark.parametrize("zero_terminal_snr", [False, True])
def test_sde_sampler_on_brownian_noise_matches_the_mixture(zero_terminal_snr: bool) -> None:
    """Within 3 Monte-Carlo SE of the exact mixture statistics (as test_sampler_gmm.py)."""
    samples = mixture_samples(SamplerSettings("dpmpp_2m_sde", 25, noise="brownian"), 3_000, zero_terminal_snr)
    for name, z in MIXTURE.z_scores(samples).items():
        assert z.abs().max() < 3.0, f"{name} off by {z.tolist()} standard errors"


@pytest.mark.parametrize("name", ["dpmpp_2m_sde", "ddpm"])
def test_step_counts_follow_the_same_path(name: str) -> None:
    """The point of the option: with the exact denoiser, an item's image at 20 steps is close to
    its image at 100 steps on a Brownian path, while independent noise makes them unrelated
    draws (the mean squared distance is then about twice the mixture's variance)."""
    n, settings = 300, SamplerSettings(name, 20)  # type: ignore[arg-type]

    def distance(kind: str) -> float:
        coarse = mixture_samples(SamplerSettings(name, 20, noise=kind), n)  # type: ignore[arg-type]
        fine = mixture_samples(SamplerSettings(name, 100, noise=kind), n)  # type: ignore[arg-type]
        return float(((coarse - fine) ** 2).sum(1).mean())

    assert settings.noise == "independent"  # the default keeps every earlier result reproducible
    brownian, independent = distance("brownian"), distance("independent")
    assert brownian < 0.25 * independent, (brownian, independent)
