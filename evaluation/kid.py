"""Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel (Bińkowski et al.,
2018, eq. 3), in float64.

All estimators here are weighted pair sums over the full kernel matrices, computed in row blocks:
a subset is a 0/1 weight vector and a bootstrap resample is a count vector, so the kernel is
evaluated once per pair of points however many subsets or resamples are scored.
The defaults and the subset sampling reproduce torch-fidelity (degree 3, gamma 1/d, coef0 1,
``np.random.RandomState(seed).choice(n, m, replace=False)`` for input 1 then input 2 per subset).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from evaluation.fid import as_float64


@dataclass(frozen=True)
class PolynomialKernel:
    """k(x, y) = (gamma <x, y> + coef0)^degree; gamma None means 1 / d."""

    degree: int = 3
    gamma: float | None = None
    coef0: float = 1.0

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gamma = 1.0 / x.shape[1] if self.gamma is None else self.gamma
        return (x @ y.T * gamma + self.coef0) ** self.degree

    def diagonal(self, x: torch.Tensor) -> torch.Tensor:
        gamma = 1.0 / x.shape[1] if self.gamma is None else self.gamma
        return ((x * x).sum(dim=1) * gamma + self.coef0) ** self.degree


def _pair_sum(
    kernel: PolynomialKernel, x: torch.Tensor, y: torch.Tensor, wx: torch.Tensor, wy: torch.Tensor, block: int
) -> torch.Tensor:
    """sum_{k,l} wx[:, k] K(x_k, y_l) wy[:, l] for each row of the weights: (W,)."""
    total = torch.zeros(wx.shape[0], dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], block):
        rows = slice(start, start + block)
        total += ((wx[:, rows] @ kernel(x[rows], y)) * wy).sum(dim=1)
    return total


@dataclass(frozen=True)
class PairSums:
    """Off-diagonal within-set sums and the cross sum, per weighting: (W,) each."""

    xx: torch.Tensor
    yy: torch.Tensor
    xy: torch.Tensor


def weighted_pair_sums(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    wx: torch.Tensor,
    wy: torch.Tensor,
    kernel: PolynomialKernel = PolynomialKernel(),
    block: int = 1024,
) -> PairSums:
    """For weights wx (W, n), wy (W, m): sum over pairs of *distinct* points of w_k w_l k(., .)."""
    x, y = as_float64(x), as_float64(y)
    wx, wy = wx.to(x), wy.to(x)
    xx = _pair_sum(kernel, x, x, wx, wx, block) - (wx * wx) @ kernel.diagonal(x)
    yy = _pair_sum(kernel, y, y, wy, wy, block) - (wy * wy) @ kernel.diagonal(y)
    return PairSums(xx, yy, _pair_sum(kernel, x, y, wx, wy, block))


def subset_weights(n: int, size: int, subsets: int, rng: np.random.RandomState, n_other: int) -> tuple[np.ndarray, np.ndarray]:
    """0/1 weights of ``subsets`` pairs of subsets, drawn in torch-fidelity's order."""
    wx, wy = np.zeros((subsets, n)), np.zeros((subsets, n_other))
    for s in range(subsets):
        wx[s, rng.choice(n, size, replace=False)] = 1.0
        wy[s, rng.choice(n_other, size, replace=False)] = 1.0
    return wx, wy


@dataclass(frozen=True)
class KidResult:
    """Mean and (population) standard deviation of unbiased MMD^2 over subsets."""

    mean: float
    std: float
    subsets: int
    subset_size: int
    seed: int


def kid(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 2020,
    kernel: PolynomialKernel = PolynomialKernel(),
) -> KidResult:
    """KID of feature sets x (n, d) and y (m, d) with subsets of size min(n, m, subset_size)."""
    n, m = len(x), len(y)
    size = min(n, m, subset_size)
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {n} and {m}")
    wx, wy = subset_weights(n, size, subsets, np.random.RandomState(seed), m)
    sums = weighted_pair_sums(x, y, torch.from_numpy(wx), torch.from_numpy(wy), kernel)
    mmd2 = (sums.xx + sums.yy) / (size * (size - 1)) - 2 * sums.xy / (size * size)
    return KidResult(float(mmd2.mean()), float(mmd2.std(unbiased=False)), subsets, size, seed)


def mmd2_unbiased(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, kernel: PolynomialKernel = PolynomialKernel()) -> float:
    """The full-sample unbiased MMD^2 (eq. 3 of Bińkowski et al. over all points)."""
    n, m = len(x), len(y)
    sums = weighted_pair_sums(x, y, torch.ones(1, n), torch.ones(1, m), kernel)
    return float((sums.xx / (n * (n - 1)) + sums.yy / (m * (m - 1)) - 2 * sums.xy / (n * m))[0])


def mmd2_resampled(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    counts_x: torch.Tensor,
    counts_y: torch.Tensor,
    kernel: PolynomialKernel = PolynomialKernel(),
) -> torch.Tensor:
    """MMD^2 of bootstrap resamples given as count vectors (B, n), (B, m), unbiased under resampling.

    Pairs of copies of the same point are left out and the within-set sums are divided by
    E[sum_{k != l} c_k c_l] = (n - 1)^2 (multinomial counts), so E*[statistic] equals the
    full-sample estimate ``mmd2_unbiased`` exactly and the bootstrap is not biased upward by
    duplicated points.
    """
    n, m = len(x), len(y)
    sums = weighted_pair_sums(x, y, counts_x.double(), counts_y.double(), kernel)
    return sums.xx / (n - 1) ** 2 + sums.yy / (m - 1) ** 2 - 2 * sums.xy / (n * m)
