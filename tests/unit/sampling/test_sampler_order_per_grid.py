"""Which grid suits which sampler: the claims of docs/sampling.md ("Which grid for which sampler"),
measured as ``python -m benchmarks.sampler_accuracy --tables order`` measures them, on fewer
trajectories.

The schedule's own grids (linear schedule, T = 1000): the default ``trailing`` spacing ends at
``sigma(T/n - 1)`` (0.17 at 20 steps, 0.03 at 160), Karras sigmas at the schedule's ``sigma_min``
(0.01). Reference: the probability-flow ODE from ``sigma_max`` to ``sigma_min``, then the exact
denoiser (``mjexp.testing.probability_flow``). Margins come from 8 seeds of this setting (32
trajectories): Karras orders 2.14-2.29; Heun on trailing 0.79-0.91 of the exact solver's error;
DPM++(2M) from 80 to 160 steps on trailing 0.89-1.23, on Karras 2.03-2.12; DPM++(2M) trailing
over Karras error 0.36-0.57 at 20 and 40 steps, 0.47-0.79 at 80.
"""

from __future__ import annotations

import math

import pytest

from benchmarks.sampler_accuracy import Convergence, OrderStudy, order_study
from mjexp.diffusion.schedules import NoiseSchedule, ScheduleSettings
from mjexp.sampling.denoiser import Denoiser
from mjexp.testing.gaussian_mixture import reference_mixture
from mjexp.testing.probability_flow import observed_order

LADDER = (20, 40, 80, 160)


@pytest.fixture(scope="module")
def study() -> OrderStudy:
    mixture = reference_mixture()
    schedule = NoiseSchedule(ScheduleSettings("linear", 1000, 1e-4, 0.02))
    denoiser = Denoiser(mixture.network(schedule, "v"), schedule)
    return order_study(
        denoiser, mixture, trajectories=32, seed=0, samplers=("heun", "dpmpp_2m"), grids=("trailing", "karras"),
        ladder=LADDER,
    )


def runs(study: OrderStudy) -> dict[tuple[str, str], Convergence]:
    return {(c.sampler, c.grid): c for c in study.convergence}


def test_order_is_the_slope_of_log_error_on_log_steps() -> None:
    errors = {n: 3.0 * n**-2.0 for n in LADDER}
    assert observed_order(list(errors), list(errors.values())) == pytest.approx(2.0)
    kinked = Convergence("any", "any", {20: 1.0, 40: 0.25, 80: 0.125})  # order 2, then order 1
    assert kinked.local_orders() == pytest.approx([2.0, 1.0])
    assert kinked.order(fit=(20, 80)) == pytest.approx(1.5)
    assert kinked.order(fit=(40, 80)) == pytest.approx(1.0)


def test_reference_is_converged_far_below_the_errors_it_judges(study: OrderStudy) -> None:
    smallest = min(e for c in study.convergence for e in c.errors.values())
    assert study.reference_gap < 1e-2 * smallest, (study.reference_gap, smallest)


def test_trailing_grid_stops_short_of_sigma_min_with_wide_last_steps(study: OrderStudy) -> None:
    trailing, karras = study.ends
    assert (trailing.grid, karras.grid) == ("trailing", "karras")
    assert all(trailing.last_sigma[n] > 2 * study.sigma_min for n in LADDER)
    assert all(trailing.last_width[n] > 0.5 for n in LADDER)  # stays wide however many steps
    assert all(karras.last_sigma[n] == pytest.approx(study.sigma_min) for n in LADDER)
    for n, m in zip(LADDER, LADDER[1:]):  # Karras steps at the small end halve with each doubling
        assert karras.last_width[n] / karras.last_width[m] == pytest.approx(2.0, rel=0.05)
    assert all(karras.exact_solver_error[n] < 1e-9 for n in LADDER)
    assert all(trailing.exact_solver_error[n] > 1e-4 for n in LADDER)  # what no solver can remove there


def test_heun_and_dpmpp_2m_are_second_order_on_karras_sigmas(study: OrderStudy) -> None:
    for name in ("heun", "dpmpp_2m"):
        run = runs(study)[name, "karras"]
        assert 1.9 <= run.order() <= 2.5, (name, run.errors)
        assert run.local_orders()[-1] >= 1.8, (name, run.errors)


def test_on_trailing_heun_is_limited_by_the_grid(study: OrderStudy) -> None:
    """Heun's error on trailing is (a little below) the exact ODE solution's on that grid: the
    skipped end of the ODE below sigma(T/n - 1), not the solver, sets it, so its order stays under 2."""
    heun = runs(study)["heun", "trailing"]
    exact = study.ends[0].exact_solver_error
    for n in LADDER:
        assert 0.7 <= heun.errors[n] / exact[n] <= 1.05, (n, heun.errors[n], exact[n])
    assert 1.5 <= heun.order() <= 1.85, heun.errors


def test_dpmpp_2m_on_trailing_beats_karras_up_to_80_steps_then_loses_its_order(study: OrderStudy) -> None:
    trailing, karras = runs(study)["dpmpp_2m", "trailing"], runs(study)["dpmpp_2m", "karras"]
    assert trailing.errors[20] < 0.6 * karras.errors[20] and trailing.errors[40] < 0.6 * karras.errors[40]
    assert trailing.errors[80] < karras.errors[80]
    assert trailing.local_orders()[-1] <= 1.5 and karras.local_orders()[-1] >= 1.8
    assert not math.isclose(trailing.order(), karras.order(), abs_tol=0.2)
