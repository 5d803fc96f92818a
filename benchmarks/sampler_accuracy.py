"""Sampler accuracy on a distribution with a known exact denoiser: steps needed to reach an error.

    python -m benchmarks.sampler_accuracy [--n 20000] [--z 3] [--spacing trailing] [--karras]

The data are the 2-D, 3-mode Gaussian mixture of :func:`mjexp.testing.gaussian_mixture.reference_mixture`
and the "network" is its exact denoiser, so every error is the sampler's own. Error = the largest
|z-score| over 8 statistics (2 means, 3 covariance entries, 3 mode weights), each in units of its
Monte-Carlo standard error at ``n`` samples (``GaussianMixture.z_scores``): exact sampling scores
about 1-2, a biased sampler grows like sqrt(n). "Steps to reach" is the first step count of the
ladder whose error is <= z there and at the next ladder value (one lucky dip does not count):
from there on the sampler is indistinguishable from exact sampling at this n (the acceptance test
of ``tests/unit/sampling/test_sampler_gmm.py``). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Sequence

import torch

from mjexp.diffusion.schedules import NoiseSchedule
from mjexp.sampling.denoiser import Denoiser
from mjexp.testing.gaussian_mixture import GaussianMixture, reference_mixture
from mjexp.sampling.guidance import Guidance
from mjexp.sampling.samplers import SAMPLERS, SamplerSettings, initial_state, sample_from

LADDER = (5, 10, 15, 20, 25, 30, 40, 50, 75, 100, 150, 200, 300, 500, 750, 1000)
SHOWN_STEPS = (10, 25, 50)
BETAS = {"linear": (1e-4, 0.02), "scaled_linear": (0.00085, 0.012), "cosine": (1e-4, 0.02)}


@dataclass(frozen=True)
class Point:
    steps: int
    nfe: int
    error: float  # largest |z| over the statistics


def max_abs_z(mixture: GaussianMixture, samples: torch.Tensor) -> float:
    return float(torch.cat(list(mixture.z_scores(samples).values())).abs().max())


def run(settings: SamplerSettings, denoiser: Denoiser, n: int, seed: int) -> tuple[torch.Tensor, int]:
    """Samples and NFE; every run starts from the same noise (and draws per-step noise in the same order)."""
    grid = settings.grid(denoiser.schedule)
    start = torch.randn(n, 2, 1, 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="samples per run")
    parser.add_argument("--z", type=float, default=3.0, help="target: largest |z-score| of the statistics")
    parser.add_argument("--schedule", choices=sorted(BETAS), default="linear")
    parser.add_argument("--zero-terminal-snr", action="store_true")
    parser.add_argument("--parameterization", choices=["eps", "v", "x0"], default="v")
    parser.add_argument("--spacing", choices=["leading", "trailing", "linspace"], default="trailing")
    parser.add_argument("--karras", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny tensors: 1 is fastest)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    mixture = reference_mixture()
    schedule = NoiseSchedule(
        args.schedule, 1000, *BETAS[args.schedule], zero_terminal_snr=args.zero_terminal_snr
    )
    denoiser = Denoiser(mixture.network(schedule, args.parameterization), schedule)
    exact, _ = mixture.sample(args.n, torch.Generator().manual_seed(args.seed))
    results = {name: ladder_walk(name, args, denoiser, mixture) for name in SAMPLERS}
    print(
        f"Gaussian mixture (2-D, 3 modes), exact denoiser viewed as a {args.parameterization}-network; "
        f"{args.schedule} schedule{' with zero terminal SNR' if args.zero_terminal_snr else ''}, "
        f"{args.spacing} spacing{', Karras sigmas' if args.karras else ''}; n = {args.n} samples per run. "
        f"Error = largest |z| of 8 statistics in Monte-Carlo standard errors; exact samples score "
        f"{max_abs_z(mixture, exact):.1f}.\n"
    )
    print(table(results, args.z))


if __name__ == "__main__":
    main()
