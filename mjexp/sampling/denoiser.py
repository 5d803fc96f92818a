"""Adapter from a network (VP input, timestep) to a denoiser in sigma space (the samplers' view).

Samplers keep their state in variance-exploding (VE) form ``x = x0 + sigma * eps`` (Karras et al.
2022); a network trained on the VP process sees ``x_vp = x / sqrt(1 + sigma^2)``
and a training timestep ``t``. At ``sigma = inf`` (zero terminal SNR) the VE state is undefined, so
there the sampler state *is* the VP state (pure noise) and ``x_vp = x``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch

from mjexp.diffusion.parameterization import (
    Parameterization,
    Predictions,
    check_parameterization,
    predictions_from,
)
from mjexp.diffusion.schedules import NoiseSchedule

Cond = Mapping[str, Any]
"""Network conditioning: ``{"text": TextEmbedding, "image": Tensor (optional)}``."""

Network = Callable[..., torch.Tensor]
"""``network(x_vp, t, **cond) -> output`` with ``t`` a (B,) float tensor of training timesteps."""


def vp_coefficients_at(sigma: float) -> tuple[float, float]:
    """``(alpha, sigma_vp) = (1, sigma) / sqrt(1 + sigma^2)``, exact at ``sigma = inf`` (0, 1)."""
    if math.isinf(sigma):
        return 0.0, 1.0
    scale = math.sqrt(1.0 + sigma * sigma)
    return 1.0 / scale, sigma / scale


def vp_coefficient_tensors(sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`vp_coefficients_at` as 0-d float64 tensors, which keep full precision yet do not
    promote the float32 tensors they multiply (``torch.tensor(float)`` would round to float32)."""
    alpha, sigma_vp = vp_coefficients_at(sigma)
    return torch.tensor(alpha, dtype=torch.float64), torch.tensor(sigma_vp, dtype=torch.float64)


def vp_state(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The network input for sampler state ``x`` at ``sigma``."""
    return x if math.isinf(sigma) else x * vp_coefficients_at(sigma)[0]


class Denoiser:
    """``denoiser(x, sigma, cond, t=None) -> Predictions(x0, eps)`` for VE state ``x``.

    ``t`` defaults to ``schedule.sigma_to_t(sigma)``; samplers walking a timestep grid pass the
    grid's timesteps so integer timesteps reach the network exactly (no sigma -> t round trip).
    """

    def __init__(
        self,
        network: Network,
        schedule: NoiseSchedule,
        parameterization: Parameterization | None = None,
    ) -> None:
        if parameterization is None:
            parameterization = getattr(network, "parameterization", None)
            if parameterization is None:
                raise ValueError("pass parameterization= or give the network a `parameterization` attribute")
        check_parameterization(parameterization, schedule.zero_terminal_snr)
        self.network = network
        self.schedule = schedule
        self.parameterization: Parameterization = parameterization

    def __call__(self, x: torch.Tensor, sigma: float, cond: Cond, t: float | None = None) -> Predictions:
        if not sigma > 0:
            raise ValueError(f"the denoiser needs sigma > 0, got {sigma}")
        if t is None:
            t = float(self.schedule.sigma_to_t(sigma))
        t_dtype = torch.promote_types(x.dtype, torch.float32)  # keep fractional t exact in half precision
        t_batch = torch.full((x.shape[0],), t, dtype=t_dtype, device=x.device)
        x_vp = vp_state(x, sigma)
        # A network run under autocast answers in bf16; the sampler state keeps its own dtype.
        output = self.network(x_vp, t_batch, **cond).to(x.dtype)
        return predictions_from(self.parameterization, output, x_vp, *vp_coefficient_tensors(sigma))
