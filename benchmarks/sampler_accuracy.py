"""Sampler accuracy on a distribution with a known exact denoiser: steps to reach an error, and
the observed order of convergence per sampler and sigma grid.

    python -m benchmarks.sampler_accuracy [--tables z order] [--n 20000] [--z 3] [--spacing trailing] [--karras]

The data are the 2-D, 3-mode Gaussian mixture of :func:`mjexp.testing.gaussian_mixture.reference_mixture`
and the "network" is its exact denoiser, so every error is the sampler's own (or its grid's).

``z`` table: every sampler on the grid chosen by ``--spacing``/``--karras``. Error = the largest
|z-score| over 8 statistics (2 means, 3 covariance entries, 3 mode weights), each in units of its
Monte-Carlo standard error at ``n`` samples (``GaussianMixture.z_scores``): exact sampling scores
about 1-2, a biased sampler grows like sqrt(n). "Steps to reach" is the first step count of the
ladder whose error is <= z there and at the next ladder value (one lucky dip does not count):
from there on the sampler is indistinguishable from exact sampling at this n (the acceptance test
of ``tests/unit/sampling/test_sampler_gmm.py``).

``order`` tables: the deterministic samplers (``DEFAULT_ETA`` 0; the stochastic ones solve no ODE
and are left out) on each grid of ``GRIDS``, at the step counts of ``ORDER_LADDER``, from the same
``--trajectories`` starting noises. Reference: the probability-flow ODE from the grids' common
``sigma_max`` down to the schedule's ``sigma_min``, solved by DOP853 (``mjexp.testing.probability_flow``),
then the exact denoiser at ``sigma_min``: the limit every grid reaches as its steps grow (the
trailing grid at ``steps = T``), and the same for every grid and sampler. Error = median over
trajectories of the distance to it; observed order = minus the least-squares slope of log error on
log steps over ``ORDER_FIT``, and between neighbouring step counts. The grid table shows where each
grid ends and the error of an exact ODE solution on it followed by the final denoising step (the
error no solver can remove on that grid). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from mjexp.diffusion.schedules import NoiseSchedule, ScheduleSettings
from mjexp.sampling.denoiser import Denoiser
from mjexp.testing.gaussian_mixture import GaussianMixture, reference_mixture
from mjexp.testing.probability_flow import denoised, observed_order, ode_states, trajectory_error
from mjexp.sampling.guidance import Guidance
from mjexp.sampling.samplers import DEFAULT_ETA, SAMPLERS, SamplerSettings, initial_state, sample_from

LADDER = (5, 10, 15, 20, 25, 30, 40, 50, 75, 100, 150, 200, 300, 500, 750, 1000)
SHOWN_STEPS = (10, 25, 50)
BETAS = {"linear": (1e-4, 0.02), "scaled_linear": (0.00085, 0.012), "cosine": (1e-4, 0.02)}

ORDER_LADDER = (5, 10, 20, 40, 80, 160)
ORDER_FIT = (20, 160)  # below 20 steps the first steps from sigma_max are far from the asymptotic regime
# ``leading`` is left out: its first sigma moves with the step count, so its runs start from
# different states and no one reference serves them.
GRIDS: dict[str, dict[str, Any]] = {
    "trailing": {"spacing": "trailing"},  # the default
    "karras": {"karras": True},
    "linspace": {"spacing": "linspace"},
}
DETERMINISTIC = tuple(name for name, eta in DEFAULT_ETA.items() if eta == 0.0)
REFERENCE_TOL = 1e-9


@dataclass(frozen=True)
class Point:
    steps: int
    nfe: int
    error: float  # largest |z| over the statistics


def max_abs_z(mixture: GaussianMixture, samples: torch.Tensor) -> float:
    return float(torch.cat(list(mixture.z_scores(samples).values())).abs().max())


def initial_noise(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 2, 1, 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def run(settings: SamplerSettings, denoiser: Denoiser, n: int, seed: int) -> tuple[torch.Tensor, int]:
    """Samples and NFE; every run starts from the same noise (and draws per-step noise in the same order)."""
    grid = settings.grid(denoiser.schedule)
    start = initial_noise(n, seed)
    steps = torch.Generator().manual_seed(seed + 1)
    noise = lambda k: torch.randn(n, 2, 1, 1, generator=steps, dtype=torch.float64)  # noqa: E731
    x = initial_state(start, float(grid.sigmas[0]))
    result = sample_from(denoiser, x, grid, noise, {}, None, sampler=settings, guidance=Guidance(scale=1.0))
    return result.images, result.nfe


def ladder_walk(
    name: str, args: argparse.Namespace, denoiser: Denoiser, mixture: GaussianMixture
) -> list[Point]:
    """Evaluate the ladder upwards until the error stays below ``z`` for two consecutive counts."""
    points: list[Point] = []
    for steps in LADDER:
        settings = SamplerSettings(name, steps, args.spacing, args.karras)  # type: ignore[arg-type]
        samples, nfe = run(settings, denoiser, args.n, args.seed)
        points.append(Point(steps, nfe, max_abs_z(mixture, samples)))
        if first_reached(points, args.z) is not None and steps >= max(SHOWN_STEPS):
            break
    return points


def first_reached(points: Sequence[Point], z: float) -> Point | None:
    for here, after in zip(points, points[1:]):
        if here.error <= z and after.error <= z:
            return here
    return None


def table(results: dict[str, list[Point]], z: float) -> str:
    head = [f"max abs z @ {s} steps" for s in SHOWN_STEPS]
    lines = [
        "| sampler | " + " | ".join(head) + f" | steps to max abs z <= {z:g} | NFE there |",
        "|---|" + "---|" * (len(head) + 2),
    ]
    for name, points in results.items():
        by_steps = {p.steps: p for p in points}
        shown = [f"{by_steps[s].error:.1f}" for s in SHOWN_STEPS]
        hit = first_reached(points, z)
        reach = [str(hit.steps), str(hit.nfe)] if hit else [f"> {points[-1].steps}", "-"]
        lines.append(f"| {name} | " + " | ".join(shown + reach) + " |")
    return "\n".join(lines)


# ---- order of convergence per sampler and grid -------------------------------------------------
@dataclass(frozen=True)
class Convergence:
    """One deterministic sampler on one grid: median distance to the reference at each step count."""

    sampler: str
    grid: str
    errors: dict[int, float]

    def order(self, fit: tuple[int, int] = ORDER_FIT) -> float:
        steps = [s for s in self.errors if fit[0] <= s <= fit[1]]
        return observed_order(steps, [self.errors[s] for s in steps])

    def local_orders(self) -> list[float]:
        """The order between each pair of neighbouring step counts."""
        steps = sorted(self.errors)
        return [observed_order(pair, [self.errors[s] for s in pair]) for pair in zip(steps, steps[1:])]


@dataclass(frozen=True)
class GridEnd:
    """Where a grid ends, per step count: its last nonzero sigma, the width in log sigma of its last
    step between nonzero sigmas, and the error an exact ODE solution to that last sigma followed by
    the final denoising step leaves (no solver on this grid can do better)."""

    grid: str
    last_sigma: dict[int, float]
    last_width: dict[int, float]
    exact_solver_error: dict[int, float]


@dataclass(frozen=True)
class OrderStudy:
    ends: list[GridEnd]
    convergence: list[Convergence]
    sigma_max: float
    sigma_min: float
    trajectories: int
    reference_gap: float  # the reference at REFERENCE_TOL against one at 10x that tolerance


def order_study(
    denoiser: Denoiser,
    mixture: GaussianMixture,
    trajectories: int,
    seed: int,
    samplers: Sequence[str] = DETERMINISTIC,
    grids: Sequence[str] = tuple(GRIDS),
    ladder: Sequence[int] = ORDER_LADDER,
) -> OrderStudy:
    """Every sampler on every grid at every step count, against one reference (see the module docstring)."""
    schedule = denoiser.schedule
    sigma_max, sigma_min = schedule.sigma_max, schedule.sigma_min
    if math.isinf(sigma_max):
        raise ValueError("the order tables need a finite sigma_max: drop --zero-terminal-snr or use --tables z")
    grid_of = {(g, n): SamplerSettings(steps=n, **GRIDS[g]).grid(schedule) for g in grids for n in ladder}
    sigmas = {key: grid.sigmas.tolist() for key, grid in grid_of.items()}
    for (g, n), grid in sigmas.items():
        if not math.isclose(grid[0], sigma_max, rel_tol=1e-12):
            raise ValueError(f"the {g} grid of {n} steps starts at sigma {grid[0]}, not at sigma_max {sigma_max}")
    start = initial_state(initial_noise(trajectories, seed), sigma_max)
    stops = [sigma_min, *{grid[-2] for grid in sigmas.values()}]
    states = dict(zip(stops, ode_states(mixture, start, sigma_max, stops, REFERENCE_TOL)))
    reference = denoised(mixture, states[sigma_min], sigma_min)
    coarser = ode_states(mixture, start, sigma_max, [sigma_min], 10 * REFERENCE_TOL)[0]

    def exact_solver_error(last: float) -> float:
        return trajectory_error(denoised(mixture, states[last], last), reference)

    def sampler_error(name: str, grid: str, steps: int) -> float:
        sampler = SamplerSettings(name, steps, **GRIDS[grid])  # type: ignore[arg-type]
        return trajectory_error(run(sampler, denoiser, trajectories, seed)[0], reference)

    ends = [
        GridEnd(
            g,
            {n: sigmas[g, n][-2] for n in ladder},
            {n: math.log(sigmas[g, n][-3] / sigmas[g, n][-2]) for n in ladder},
            {n: exact_solver_error(sigmas[g, n][-2]) for n in ladder},
        )
        for g in grids
    ]
    convergence = [
        Convergence(name, g, {n: sampler_error(name, g, n) for n in ladder}) for name in samplers for g in grids
    ]
    gap = trajectory_error(denoised(mixture, coarser, sigma_min), reference)
    return OrderStudy(ends, convergence, sigma_max, sigma_min, trajectories, gap)


def grid_table(study: OrderStudy) -> str:
    ladder = sorted(study.ends[0].last_sigma)
    lines = [
        "| grid | at steps | " + " | ".join(map(str, ladder)) + " |",
        "|---|---|" + "---|" * len(ladder),
    ]
    for end in study.ends:
        for label, values, fmt in (
            ("last nonzero sigma", end.last_sigma, ".3g"),
            ("last step between nonzero sigmas, width in log sigma", end.last_width, ".2f"),
            ("error of an exact ODE solution on this grid", end.exact_solver_error, ".1e"),
        ):
            lines.append(f"| {end.grid} | {label} | " + " | ".join(format(values[n], fmt) for n in ladder) + " |")
    return "\n".join(lines)


def order_table(study: OrderStudy) -> str:
    ladder = sorted(study.convergence[0].errors)
    lines = [
        "| sampler | grid | " + " | ".join(f"error @ {n}" for n in ladder)
        + f" | order, fit {ORDER_FIT[0]}-{ORDER_FIT[1]} | local orders {'-'.join(map(str, ladder))} |",
        "|---|---|" + "---|" * (len(ladder) + 2),
    ]
    for c in study.convergence:
        errors = " | ".join(f"{c.errors[n]:.1e}" for n in ladder)
        local = ", ".join(f"{o:.2f}" for o in c.local_orders())
        lines.append(f"| {c.sampler} | {c.grid} | {errors} | {c.order():.2f} | {local} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="samples per run")
    parser.add_argument("--z", type=float, default=3.0, help="target: largest |z-score| of the statistics")
    parser.add_argument("--schedule", choices=sorted(BETAS), default="linear")
    parser.add_argument("--zero-terminal-snr", action="store_true")
    parser.add_argument("--parameterization", choices=["eps", "v", "x0"], default="v")
    parser.add_argument("--tables", nargs="+", choices=["z", "order"], default=["z", "order"])
    parser.add_argument("--spacing", choices=["leading", "trailing", "linspace"], default="trailing",
                        help="the z table's grid (the order tables measure every grid of GRIDS)")
    parser.add_argument("--karras", action="store_true", help="the z table on Karras sigmas")
    parser.add_argument("--trajectories", type=int, default=64, help="order tables: starting noises")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny tensors: 1 is fastest)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    mixture = reference_mixture()
    schedule = NoiseSchedule(
        ScheduleSettings(args.schedule, 1000, *BETAS[args.schedule], zero_terminal_snr=args.zero_terminal_snr)
    )
    denoiser = Denoiser(mixture.network(schedule, args.parameterization), schedule)
    problem = (
        f"Gaussian mixture (2-D, 3 modes), exact denoiser viewed as a {args.parameterization}-network; "
        f"{args.schedule} schedule{' with zero terminal SNR' if args.zero_terminal_snr else ''}"
    )
    if "order" in args.tables:
        try:
            study = order_study(denoiser, mixture, args.trajectories, args.seed)
        except ValueError as error:
            parser.error(str(error))
        print(
            f"{problem}. Deterministic samplers on each grid, {study.trajectories} trajectories. Reference: the "
            f"probability-flow ODE from sigma_max = {study.sigma_max:.4g} to sigma_min = {study.sigma_min:.4g} "
            f"(DOP853, tolerance {REFERENCE_TOL:g}; at {10 * REFERENCE_TOL:g} it moves by {study.reference_gap:.1e}), "
            "then the exact denoiser there. Error = median distance to the reference.\n"
        )
        print(grid_table(study) + "\n")
        print(order_table(study) + "\n")
    if "z" in args.tables:
        exact, _ = mixture.sample(args.n, torch.Generator().manual_seed(args.seed))
        results = {name: ladder_walk(name, args, denoiser, mixture) for name in SAMPLERS}
        print(
            f"{problem}, {args.spacing} spacing{', Karras sigmas' if args.karras else ''}; n = {args.n} samples "
            f"per run. Error = largest |z| of 8 statistics in Monte-Carlo standard errors; exact samples score "
            f"{max_abs_z(mixture, exact):.1f}.\n"
        )
        print(table(results, args.z))


if __name__ == "__main__":
    main()
