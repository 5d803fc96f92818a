"""Shared pieces of the sampling tests: schedules and a toy network."""

from __future__ import annotations

import torch

from mjexp.diffusion.schedules import NoiseSchedule, ScheduleSettings


def linear_schedule(zero_terminal_snr: bool = False) -> NoiseSchedule:
    """DDPM's linear schedule (the diffusers default), optionally rescaled to zero terminal SNR."""
    return NoiseSchedule(ScheduleSettings("linear", 1000, 1e-4, 0.02, zero_terminal_snr=zero_terminal_snr))


class ToyNetwork:
    """A smooth, timestep-dependent, channel-mixing stand-in for a U-Net.

    Strongly dependent on ``t`` so that a timestep off by one grid point changes the output by
    ~1e-3, far above float32 agreement.
    """

    def __init__(self, parameterization: str = "eps") -> None:
        self.parameterization = parameterization

    def __call__(self, x: torch.Tensor, t: torch.Tensor, **cond: object) -> torch.Tensor:
        u = (t.to(x.dtype) / 1000).reshape(-1, *([1] * (x.ndim - 1)))
        mixed = 0.7 * x + 0.3 * x.roll(1, dims=1)
        return torch.tanh(mixed) * (1 - u) + 0.5 * u * x + 0.1 * torch.sin(3 * u)
