"""The probability-flow ODE of a Gaussian mixture, solved far more accurately than any sampler.

Deterministic samplers are discretisations of ``dx/dlog(sigma) = sigma * eps(x, sigma) = x - D(x, sigma)``
(the VE state ``x = x0 + sigma * eps``; ``D`` the exact denoiser of
:class:`~mjexp.testing.gaussian_mixture.GaussianMixture`). Solving that ODE with SciPy's DOP853 (an
adaptive 8th-order Runge-Kutta method, independent of every sampler in ``mjexp.sampling``) gives the
reference their errors are measured against, on any grid; :func:`observed_order` turns errors at a
ladder of step counts into an order of convergence. Used by ``tests/unit/sampling`` and
``benchmarks/sampler_accuracy.py``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from scipy.integrate import solve_ivp

from mjexp.sampling.denoiser import vp_coefficients_at
from mjexp.testing.gaussian_mixture import GaussianMixture


def denoised(mixture: GaussianMixture, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The exact ``D(x, sigma) = E[x0 | x]`` for VE states ``x`` (n, ...) at a finite ``sigma > 0``."""
    alpha, sigma_vp = vp_coefficients_at(sigma)
    flat = x.reshape(x.shape[0], -1).to(torch.float64)
    x0 = mixture.denoise(flat * alpha, torch.tensor(alpha), torch.tensor(sigma_vp)).x0
    return x0.reshape(x.shape)


def ode_states(
    mixture: GaussianMixture, x: torch.Tensor, sigma_start: float, sigmas: Sequence[float], tol: float = 1e-9
) -> list[torch.Tensor]:
    """The PF-ODE solution from state ``x`` at ``sigma_start`` at each of ``sigmas`` (finite, > 0,
    below ``sigma_start``; any order, repeats allowed), integrated in ``log sigma`` by DOP853 with
    ``rtol = atol = tol``. On the reference mixture, tolerances of 1e-8 and 1e-9 agree to ~1e-7."""
    if not all(0 < s < sigma_start for s in sigmas) or math.isinf(sigma_start):
        raise ValueError(f"need finite 0 < sigma < sigma_start = {sigma_start}, got {list(sigmas)}")

    def rhs(log_sigma: float, y: np.ndarray) -> np.ndarray:
        state = torch.from_numpy(y).reshape(x.shape)
        return (state - denoised(mixture, state, math.exp(log_sigma))).reshape(-1).numpy()

    stops = sorted({math.log(s) for s in sigmas}, reverse=True)  # solve_ivp wants them in integration order
    y0 = x.to(torch.float64).reshape(-1).numpy()
    solution = solve_ivp(
        rhs, (math.log(sigma_start), stops[-1]), y0, method="DOP853", rtol=tol, atol=tol, t_eval=stops
    )
    if solution.status != 0:
        raise RuntimeError(f"the reference ODE solve failed: {solution.message}")
    at = {t: torch.from_numpy(solution.y[:, k].copy()).reshape(x.shape) for k, t in enumerate(stops)}
    return [at[math.log(s)] for s in sigmas]


def trajectory_error(samples: torch.Tensor, reference: torch.Tensor) -> float:
    """Median over trajectories of the Euclidean distance to the reference. The median, because the
    few trajectories that start near the pre-image of a boundary between modes have huge error
    constants (the flow map is steep there) and reach the asymptotic regime far later."""
    return float((samples - reference).flatten(1).norm(dim=1).median())


def observed_order(steps: Sequence[int], errors: Sequence[float]) -> float:
    """Order ``p`` of ``error ~ C steps^-p``: minus the least-squares slope of log error on log steps."""
    if len(steps) != len(errors) or len(steps) < 2:
        raise ValueError(f"need errors at >= 2 step counts, got steps {list(steps)} and errors {list(errors)}")
    return float(-np.polyfit(np.log(steps), np.log(errors), 1)[0])
