"""A Gaussian mixture whose exact denoiser is known in closed form.

Samplers are judged against it: if the data are ``x0 ~ sum_k w_k N(mu_k, C_k)`` and the VP process
is ``x_t = a x0 + s eps`` (``a = sqrt(alpha_bar)``, ``s = sqrt(1 - alpha_bar)``), then

- ``x_t | k ~ N(a mu_k, a^2 C_k + s^2 I)``, so the responsibilities ``r_k(x_t)`` are Bayes' rule
  over these Gaussians;
- ``E[x0 | x_t, k] = mu_k + a C_k (a^2 C_k + s^2 I)^{-1} (x_t - a mu_k)`` (Gaussian conditioning);
- ``E[x0 | x_t] = sum_k r_k(x_t) E[x0 | x_t, k]`` is the exact minimum-MSE denoiser, i.e. what a
  perfectly trained network predicts.

At zero SNR (``a = 0``) this gives ``E[x0]``, so zero-terminal-SNR schedules work too. Moments up to
fourth order are closed-form as well, which gives exact Monte-Carlo standard errors for tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mjexp.diffusion.parameterization import (
    Parameterization,
    Predictions,
    target_from,
    vp_coefficients,
)
from mjexp.diffusion.schedules import NoiseSchedule


@dataclass(frozen=True)
class GaussianMixture:
    """``weights`` (K,), ``means`` (K, d), ``covs`` (K, d, d); stored as float64."""

    weights: torch.Tensor
    means: torch.Tensor
    covs: torch.Tensor

    def __post_init__(self) -> None:
        w, m, c = (torch.as_tensor(v, dtype=torch.float64) for v in (self.weights, self.means, self.covs))
        k, d = m.shape
        if w.shape != (k,) or c.shape != (k, d, d):
            raise ValueError(
                f"need weights (K,), means (K, d), covs (K, d, d); got {w.shape}, {m.shape}, {c.shape}"
            )
        if (w <= 0).any() or not math.isclose(float(w.sum()), 1.0, abs_tol=1e-6):
            raise ValueError(f"weights must be positive and sum to 1, got {w.tolist()}")
        torch.linalg.cholesky(c)  # raises if a covariance is not positive definite
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "means", m)
        object.__setattr__(self, "covs", c)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    # ---- exact moments ---------------------------------------------------------------------------
    def mean(self) -> torch.Tensor:
        return self.weights @ self.means

    def covariance(self) -> torch.Tensor:
        """Law of total covariance: within-component plus between-component spread."""
        centred = self.means - self.mean()
        between = torch.einsum("k,ki,kj->ij", self.weights, centred, centred)
        return torch.einsum("k,kij->ij", self.weights, self.covs) + between

    def product_variance(self) -> torch.Tensor:
        """``Var[(x_i - m_i)(x_j - m_j)]`` (d, d): the per-sample variance behind a covariance entry.

        For ``y = x - m ~ N(b, C)`` within a component, Isserlis' theorem with a mean gives
        ``E[y_i^2 y_j^2] = (b_i^2 + C_ii)(b_j^2 + C_jj) + 2 C_ij^2 + 4 b_i b_j C_ij``.
        """
        b = self.means - self.mean()
        c = self.covs
        diag = b**2 + torch.diagonal(c, dim1=1, dim2=2)  # (K, d): E[y_i^2] per component
        fourth = diag[:, :, None] * diag[:, None, :] + 2 * c**2 + 4 * b[:, :, None] * b[:, None, :] * c
        return torch.einsum("k,kij->ij", self.weights, fourth) - self.covariance() ** 2

    def z_scores(self, samples: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(statistic - exact value) / Monte-Carlo standard error`` for i.i.d. ``samples`` (n, d).

        Statistics: the mean, the upper-triangular covariance entries and the classified mode
        fractions. Standard errors come from the exact moments: ``sqrt(Var x_i / n)``,
        ``sqrt(Var[(x_i - m_i)(x_j - m_j)] / n)`` (centring on the sample mean adds an O(1/n) bias,
        negligible) and ``sqrt(w (1 - w) / n)``. Exact sampling gives approximately standard
        normal scores; a sampler's bias shows up as scores growing like ``sqrt(n)``.
        """
        x = samples.reshape(samples.shape[0], -1).to(torch.float64)
        n = x.shape[0]
        mean_z = (x.mean(0) - self.mean()) / (torch.diagonal(self.covariance()) / n).sqrt()
        upper = torch.triu_indices(self.dim, self.dim)
        cov_error = torch.cov(x.T, correction=0) - self.covariance()
        cov_z = (cov_error / (self.product_variance() / n).sqrt())[upper[0], upper[1]]
        fractions = torch.bincount(self.classify(x), minlength=len(self.weights)).double() / n
        weight_z = (fractions - self.weights) / (self.weights * (1 - self.weights) / n).sqrt()
        return {"mean": mean_z, "cov": cov_z, "weights": weight_z}

    # ---- sampling and classification -------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` exact draws (n, d) and their component labels (n,)."""
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        chol = torch.linalg.cholesky(self.covs)
        return self.means[labels] + (chol[labels] @ z[:, :, None])[:, :, 0], labels

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The Bayes-optimal component of clean points ``x`` (n, d)."""
        _, resp = self.posterior(
            x, torch.tensor(1.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
        )
        return resp.argmax(dim=1)

    # ---- the exact denoiser ----------------------------------------------------------------------
    def posterior(
        self, x_t: torch.Tensor, alpha: torch.Tensor, sigma_vp: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(E[x0 | x_t], responsibilities)`` for ``x_t`` (n, d) under ``x_t = alpha x0 + sigma_vp eps``.

        ``alpha`` and ``sigma_vp`` are scalars or (n,) tensors.
        """
        x_t = x_t.to(torch.float64)
        alpha = torch.as_tensor(alpha, dtype=torch.float64).reshape(-1, 1, 1)  # (m, 1, 1), m in {1, n}
        sigma_vp = torch.as_tensor(sigma_vp, dtype=torch.float64).reshape(-1, 1, 1)
        eye = torch.eye(self.dim, dtype=torch.float64)
        cov_t = alpha[..., None] ** 2 * self.covs + sigma_vp[..., None] ** 2 * eye  # (m, K, d, d)
        chol = torch.linalg.cholesky(cov_t)
        precision = torch.cholesky_inverse(chol)
        resid = x_t[:, None, :] - alpha * self.means  # (n, K, d): x_t - a mu_k
        if precision.shape[0] == 1:
            solved = torch.einsum("kij,nkj->nki", precision[0], resid)
        else:
            solved = torch.einsum("nkij,nkj->nki", precision, resid)
        log_det = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # (m, K): half log|cov_t|
        log_lik = -0.5 * (resid * solved).sum(-1) - log_det
        resp = torch.softmax(log_lik + self.weights.log(), dim=1)  # (n, K)
        x0_k = self.means + alpha * torch.einsum("kij,nkj->nki", self.covs, solved)  # (n, K, d)
        return (resp[:, :, None] * x0_k).sum(1), resp

    def denoise(self, x_t: torch.Tensor, alpha: torch.Tensor, sigma_vp: torch.Tensor) -> Predictions:
        """Exact (x0, eps) predictions in float64 for ``x_t`` (n, d)."""
        x0, _ = self.posterior(x_t, alpha, sigma_vp)
        a = torch.as_tensor(alpha, dtype=torch.float64).reshape(-1, 1)
        s = torch.as_tensor(sigma_vp, dtype=torch.float64).reshape(-1, 1)
        return Predictions(x0=x0, eps=(x_t.to(torch.float64) - a * x0) / s)

    def network(self, schedule: NoiseSchedule, parameterization: Parameterization) -> "MixtureNetwork":
        """The exact denoiser dressed as a trained network (the U-Net call convention)."""
        return MixtureNetwork(self, schedule, parameterization)


class MixtureNetwork:
    """``network(x_vp, t, **cond) -> output``: what a perfectly trained model of the mixture returns.

    Inputs are (B, d) or (B, d, 1, 1) (an image with ``d`` channels); conditioning is ignored.
    """

    def __init__(
        self, mixture: GaussianMixture, schedule: NoiseSchedule, parameterization: Parameterization
    ) -> None:
        self.mixture = mixture
        self.schedule = schedule
        self.parameterization = parameterization

    def __call__(self, x_vp: torch.Tensor, t: torch.Tensor, **cond: object) -> torch.Tensor:
        if (t == t[0]).all():  # one noise level for the whole batch: factor the covariances once
            t = t[:1]
        alpha, sigma_vp = vp_coefficients(self.schedule.alpha_bar(t))
        flat = x_vp.reshape(x_vp.shape[0], -1)
        pred = self.mixture.denoise(flat, alpha, sigma_vp)
        a, s = alpha.reshape(-1, 1), sigma_vp.reshape(-1, 1)
        out = target_from(self.parameterization, pred.x0, pred.eps, a, s)
        return out.reshape(x_vp.shape).to(x_vp.dtype)


def reference_mixture() -> GaussianMixture:
    """The 2-D, 3-mode mixture the tests and the benchmark use.

    Unequal weights and anisotropic, correlated covariances. Each mean is >= 5 of its component's
    standard deviations (Mahalanobis) from the midpoint to any other mean, so Bayes classification
    of exact samples is practically never wrong (0 of 2 million draws) and classified fractions
    estimate the weights without bias.
    """
    return GaussianMixture(
        weights=torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64),
        means=torch.tensor([[-3.0, 0.0], [2.5, 2.5], [2.0, -3.0]], dtype=torch.float64),
        covs=torch.tensor(
            [
                [[0.30, 0.10], [0.10, 0.20]],
                [[0.15, -0.06], [-0.06, 0.25]],
                [[0.25, 0.0], [0.0, 0.10]],
            ],
            dtype=torch.float64,
        ),
    )
