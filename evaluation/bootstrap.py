"""Bootstrap confidence intervals for FID and KID.

Both feature sets are resampled (generated and reference images are both finite samples), each
resample drawn as multinomial counts so estimators reweight points instead of copying them.

FID uses the basic (pivotal) bootstrap, [2 t - q_{1-a/2}, 2 t - q_{a/2}] (Davison & Hinkley, 1997,
eq. 5.6): it corrects the O(1/n) upward bias FID shares with its resamples, so two samples of one
distribution give an interval that covers the true value 0, which a percentile interval of a
biased statistic does not. KID's resample statistic is unbiased for the full-sample estimate
(kid.mmd2_resampled), so its interval is the plain percentile interval [q_{a/2}, q_{1-a/2}].

Two sampling settings scored on the same prompts and noise (image i of one setting pairs with
image i of the other) are compared with :func:`fid_difference`: each replicate resamples the same
item indices in both arms and one reference resample shared by both, so the between-item and
reference variance cancel in the difference instead of being counted twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from evaluation.fid import GaussianStats, as_float64, fid_from_features, frechet_distance_unchecked
from evaluation.kid import PolynomialKernel, mmd2_resampled

RESAMPLED = "generated and reference both resampled"
BASIC = f"basic bootstrap (Davison & Hinkley 1997 eq. 5.6), {RESAMPLED}"
PERCENTILE = f"percentile bootstrap of the resampling-unbiased full-sample MMD^2, {RESAMPLED}"


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float
    replicates: int
    seed: int
    method: str

    def as_params(self) -> dict[str, object]:
        return asdict(self)


def resample_counts(n: int, replicates: int, generator: torch.Generator) -> torch.Tensor:
    """(replicates, n) counts of each point in a resample of size n with replacement."""
    draws = torch.randint(0, n, (replicates, n), generator=generator)
    return torch.zeros(replicates, n, dtype=torch.float64).scatter_add_(1, draws, torch.ones(replicates, n, dtype=torch.float64))


def basic_interval(
    estimate: float, replicates: np.ndarray, level: float, seed: int, low_bound: float = -np.inf
) -> Interval:
    """Basic bootstrap interval from replicate values; ``low_bound`` clips both ends of a
    range-limited metric (when the bias correction exceeds the estimate, e.g. FID of two samples
    of one distribution, the interval collapses onto the bound instead of inverting)."""
    q_low, q_high = _quantiles(replicates, level)
    low, high = max(2 * estimate - q_high, low_bound), max(2 * estimate - q_low, low_bound)
    return Interval(low, high, level, len(replicates), seed, BASIC)


def percentile_interval(replicates: np.ndarray, level: float, seed: int) -> Interval:
    """Percentile bootstrap interval, for statistics whose resamples are unbiased."""
    q_low, q_high = _quantiles(replicates, level)
    return Interval(q_low, q_high, level, len(replicates), seed, PERCENTILE)


def _quantiles(replicates: np.ndarray, level: float) -> tuple[float, float]:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    alpha = 1.0 - level
    q_low, q_high = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    return float(q_low), float(q_high)


def _generators(seed: int) -> tuple[torch.Generator, torch.Generator]:
    """Independent streams for the two sets, fixed by ``seed``."""
    return torch.Generator().manual_seed(2 * seed), torch.Generator().manual_seed(2 * seed + 1)


def fid_replicates(
    stats_x: Callable[[torch.Tensor], GaussianStats],
    n_x: int,
    stats_y: Callable[[torch.Tensor], GaussianStats],
    n_y: int,
    replicates: int,
    seed: int,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """FID of ``replicates`` resamples of two sets of ``n_x`` and ``n_y`` units, each set's
    Gaussian refitted by ``stats_*(counts)`` from the units' resample counts."""
    gen_x, gen_y = _generators(seed)
    counts_x = resample_counts(n_x, replicates, gen_x).to(device)
    counts_y = resample_counts(n_y, replicates, gen_y).to(device)
    values = np.empty(replicates)
    for b in range(replicates):
        a, r = stats_x(counts_x[b]), stats_y(counts_y[b])
        values[b] = frechet_distance_unchecked(a.mu, a.sigma, r.mu, r.sigma)
    return values


def fid_interval(
    generated: torch.Tensor | np.ndarray,
    reference: torch.Tensor | np.ndarray,
    estimate: float,
    replicates: int = 200,
    seed: int = 0,
    level: float = 0.95,
    device: str | torch.device = "cpu",
) -> Interval:
    """Basic bootstrap CI of FID (clipped at 0, FID's lower bound), computed on ``device``."""
    x, y = as_float64(generated).to(device), as_float64(reference).to(device)
    values = fid_replicates(
        lambda w: GaussianStats.from_features(x, w), len(x),
        lambda w: GaussianStats.from_features(y, w), len(y),
        replicates, seed, device,
    )
    return basic_interval(estimate, values, level, seed, low_bound=0.0)


def kid_interval(
    generated: torch.Tensor | np.ndarray,
    reference: torch.Tensor | np.ndarray,
    replicates: int = 200,
    seed: int = 0,
    level: float = 0.95,
    kernel: PolynomialKernel = PolynomialKernel(),
    device: str | torch.device = "cpu",
) -> Interval:
    """Percentile bootstrap CI of KID from the resampling-unbiased full-sample MMD^2, on ``device``."""
    gen_x, gen_y = _generators(seed)
    counts_x = resample_counts(len(generated), replicates, gen_x)
    counts_y = resample_counts(len(reference), replicates, gen_y)
    x, y = as_float64(generated).to(device), as_float64(reference).to(device)
    values = mmd2_resampled(x, y, counts_x, counts_y, kernel).cpu().numpy()
    return percentile_interval(values, level, seed)


@dataclass(frozen=True)
class PairedFidDifference:
    """FID(a) - FID(b) of two image-for-image paired feature sets against one reference."""

    difference: float
    standard_error: float  # standard deviation of the paired bootstrap replicates
    interval: Interval

    def as_params(self) -> dict[str, object]:
        return {"difference": self.difference, "standard_error": self.standard_error, **self.interval.as_params()}


def fid_difference(
    generated_a: torch.Tensor | np.ndarray,
    generated_b: torch.Tensor | np.ndarray,
    reference: torch.Tensor | np.ndarray,
    replicates: int = 200,
    seed: int = 0,
    level: float = 0.95,
    device: str | torch.device = "cpu",
    feature_rank: int | None = None,
) -> PairedFidDifference:
    """Paired bootstrap of FID(a) - FID(b); row i of ``generated_a`` and ``generated_b`` must come
    from the same prompt and initial noise. The interval is the basic bootstrap interval.
    ``feature_rank``: the extractor's rank bound (``Extractor.feature_rank``), for FID's warning."""
    a, b, y = (as_float64(v).to(device) for v in (generated_a, generated_b, reference))
    if a.shape != b.shape:
        raise ValueError(f"paired FID needs the same items in both arms, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    estimate = fid_from_features(a, y, feature_rank) - fid_from_features(b, y, feature_rank)
    values = fid_difference_replicates(
        lambda w: GaussianStats.from_features(a, w), lambda w: GaussianStats.from_features(b, w), len(a),
        lambda w: GaussianStats.from_features(y, w), len(y), replicates, seed, device,
    )
    return PairedFidDifference(estimate, float(values.std(ddof=1)), basic_interval(estimate, values, level, seed))


def fid_difference_replicates(
    stats_a: Callable[[torch.Tensor], GaussianStats],
    stats_b: Callable[[torch.Tensor], GaussianStats],
    n_items: int,
    stats_reference: Callable[[torch.Tensor], GaussianStats],
    n_reference: int,
    replicates: int,
    seed: int,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """FID(a) - FID(b) of ``replicates`` resamples: the same resample of the ``n_items`` paired
    units in both arms, one resample of the ``n_reference`` reference units shared by both."""
    gen_items, gen_reference = _generators(seed)
    counts_items = resample_counts(n_items, replicates, gen_items).to(device)
    counts_reference = resample_counts(n_reference, replicates, gen_reference).to(device)
    values = np.empty(replicates)
    for r in range(replicates):
        ref = stats_reference(counts_reference[r])
        fids = [stats(counts_items[r]) for stats in (stats_a, stats_b)]
        values[r] = (frechet_distance_unchecked(fids[0].mu, fids[0].sigma, ref.mu, ref.sigma)
                     - frechet_distance_unchecked(fids[1].mu, fids[1].sigma, ref.mu, ref.sigma))
    return values
