"""Training-loss weighting across timesteps.

min-SNR-gamma (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy",
Eq. 8 and Sec. 3.4) clamps the effective x0-space weight ``SNR`` at ``gamma``; expressed for the
target the network regresses, the per-sample weight becomes
``min(SNR, gamma) / SNR`` (eps), ``min(SNR, gamma) / (SNR + 1)`` (v) and ``min(SNR, gamma)`` (x0).
"""

from __future__ import annotations

from typing import Literal

import torch

LossWeighting = Literal["uniform", "min_snr"]


def loss_weights(
    snr: torch.Tensor, parameterization: str, weighting: LossWeighting, gamma: float = 5.0
) -> torch.Tensor:
    """Per-sample weights multiplying the mean squared error of the prediction target."""
    if weighting == "uniform":
        return torch.ones_like(snr)
    if weighting != "min_snr":
        raise ValueError(f"unknown loss weighting {weighting!r}; choose uniform or min_snr")
    clamped = snr.clamp(max=gamma)
    if parameterization == "eps":
        return clamped / snr
    if parameterization == "v":
        return clamped / (snr + 1)
    if parameterization == "x0":
        return clamped
    raise ValueError(f"unknown parameterization {parameterization!r}")
