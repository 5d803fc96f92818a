"""Fréchet distance between Gaussians fitted to features, in float64 (Heusel et al., 2017).

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2})        (Dowson & Landau, 1982)

``tr((S1 S2)^{1/2})`` is computed as the sum of square roots of the eigenvalues of the symmetric
PSD matrix ``S1^{1/2} S2 S1^{1/2}``, which has the same eigenvalues as ``S1 S2``. Unlike
``scipy.linalg.sqrtm(S1 @ S2)`` this needs no ``eps * I`` for singular products and cannot produce
imaginary parts from rounding: an imaginary part of the true matrix square root exists only when a
covariance is not positive semi-definite, and that is an error naming its size (torch-fidelity
drops such parts silently). Singular (rank-deficient) covariances are exact here and only warned
about, since they usually mean degenerate features.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

# Eigenvalues below -NEGATIVE_RTOL * (largest |eigenvalue|) are not rounding error.
NEGATIVE_RTOL = 1e-10
# Eigenvalues below SINGULAR_RTOL * largest count as zero when reporting the rank.
SINGULAR_RTOL = 1e-12


class ImaginaryComponentError(ValueError):
    """(S1 S2)^{1/2} would have a non-negligible imaginary part: an input is not a covariance."""


def as_float64(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    return torch.as_tensor(x).to(torch.float64)


@dataclass(frozen=True)
class GaussianStats:
    """Mean (d,) and unbiased covariance (d, d) in float64 of ``n`` feature vectors."""

    mu: torch.Tensor
    sigma: torch.Tensor
    n: int

    @classmethod
    def from_features(cls, features: torch.Tensor | np.ndarray, counts: torch.Tensor | None = None) -> "GaussianStats":
        """Fit to rows of ``features`` (n, d); ``counts`` (n,) repeats rows (bootstrap resamples)."""
        x = as_float64(features)
        if x.ndim != 2:
            raise ValueError(f"features must be (n, d), got shape {tuple(x.shape)}")
        w = torch.ones(x.shape[0], dtype=torch.float64, device=x.device) if counts is None else counts.to(x)
        total = float(w.sum())
        mu = (w @ x) / total
        centred = x - mu
        sigma = (centred.T * w) @ centred / (total - 1)
        return cls(mu, (sigma + sigma.T) / 2, int(total))


def _psd_eigenvalues(matrix: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of a symmetric matrix that must be PSD up to rounding."""
    values, vectors = torch.linalg.eigh(matrix)
    scale = float(values.abs().max()) if values.numel() else 0.0
    lowest = float(values.min())
    if lowest < -NEGATIVE_RTOL * scale:
        raise ImaginaryComponentError(
            f"{name} has eigenvalue {lowest:.4g} (largest magnitude {scale:.4g}): it is not positive "
            f"semi-definite, so (S1 S2)^(1/2) would have an imaginary component of size ~{(-lowest) ** 0.5:.4g}; "
            "check that the statistics are covariances of real features"
        )
    return values.clamp(min=0.0), vectors


def _rank(values: torch.Tensor) -> int:
    return int((values > SINGULAR_RTOL * float(values.max())).sum()) if float(values.max()) > 0 else 0


def trace_sqrt_product(sigma1: torch.Tensor, sigma2: torch.Tensor) -> float:
    """tr((S1 S2)^{1/2}) for PSD ``sigma1``, ``sigma2`` via the symmetric form."""
    values, vectors = _psd_eigenvalues(sigma1, "sigma1")
    root1 = (vectors * values.sqrt()) @ vectors.T
    inner = root1 @ sigma2 @ root1
    product_values, _ = _psd_eigenvalues((inner + inner.T) / 2, "S1^(1/2) S2 S1^(1/2)")
    return float(product_values.sqrt().sum())


def frechet_distance(
    mu1: torch.Tensor | np.ndarray,
    sigma1: torch.Tensor | np.ndarray,
    mu2: torch.Tensor | np.ndarray,
    sigma2: torch.Tensor | np.ndarray,
    expected_rank: int | None = None,
) -> float:
    """Squared Fréchet distance of N(mu1, sigma1) and N(mu2, sigma2) in float64.

    Raises ImaginaryComponentError if a covariance is not PSD; warns if one has a lower rank than
    ``expected_rank`` (default: full rank), the most its features can span by construction.
    """
    mu1, mu2, sigma1, sigma2 = (as_float64(v) for v in (mu1, mu2, sigma1, sigma2))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"shape mismatch: mu1 {tuple(mu1.shape)}, sigma1 {tuple(sigma1.shape)}, mu2 {tuple(mu2.shape)}, "
            f"sigma2 {tuple(sigma2.shape)}; expected (d,) and (d, d) for one d"
        )
    for name, sigma in (("sigma1", sigma1), ("sigma2", sigma2)):
        values, _ = _psd_eigenvalues((sigma + sigma.T) / 2, name)
        rank = _rank(values)
        if rank < (d if expected_rank is None else expected_rank):
            warnings.warn(
                f"{name} is singular (numerical rank {rank} of {d}); the Fréchet distance is still exact "
                "(no eps*I added), but degenerate features make FID less informative",
                stacklevel=2,
            )
    return frechet_distance_unchecked(mu1, sigma1, mu2, sigma2)


def frechet_distance_unchecked(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """The formula without shape checks or warnings (bootstrap inner loop); float64 inputs."""
    diff = mu1 - mu2
    value = float(diff @ diff) + float(torch.trace(sigma1)) + float(torch.trace(sigma2))
    return value - 2.0 * trace_sqrt_product(sigma1, sigma2)


def fid_from_features(
    generated: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray, expected_rank: int | None = None
) -> float:
    """FID of two feature sets (n, d); ``expected_rank`` as in :func:`frechet_distance`."""
    a, b = GaussianStats.from_features(generated), GaussianStats.from_features(reference)
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma, expected_rank)
