"""What the network predicts (eps / v / x0) and conversions between predictions.

All conversions take the VP coefficients ``alpha = sqrt(alpha_bar)`` and ``sigma_vp =
sqrt(1 - alpha_bar)`` of ``x_t = alpha * x0 + sigma_vp * eps`` (broadcastable tensors).
v is Salimans & Ho 2022's ``v = alpha * eps - sigma_vp * x0``. Under zero-terminal SNR
``alpha = 0`` at the last step: x0 cannot be recovered from an eps prediction there, which is
why that combination is rejected by :func:`check_parameterization`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Parameterization = Literal["eps", "v", "x0"]
PARAMETERIZATIONS: tuple[str, ...] = ("eps", "v", "x0")


@dataclass(frozen=True)
class Predictions:
    """A denoiser's answer at one noise level, in both forms the samplers use."""

    x0: torch.Tensor
    eps: torch.Tensor


def check_parameterization(parameterization: str, zero_terminal_snr: bool) -> None:
    """Reject combinations that cannot work, with the reason."""
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(
            f"unknown parameterization {parameterization!r}; choose one of {PARAMETERIZATIONS}"
        )
    if zero_terminal_snr and parameterization == "eps":
        raise ValueError(
            "zero_terminal_snr=true cannot be used with parameterization=eps: at SNR 0 the input "
            "is pure noise, so predicting eps carries no information about x0 (Lin et al. 2024, "
            "Sec. 3.2). Use parameterization=v or x0."
        )


def vp_coefficients(alpha_bar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha, sigma_vp) = (sqrt(alpha_bar), sqrt(1 - alpha_bar))."""
    return alpha_bar.sqrt(), (1 - alpha_bar).sqrt()


def target_from(
    parameterization: Parameterization,
    x0: torch.Tensor,
    eps: torch.Tensor,
    alpha: torch.Tensor,
    sigma_vp: torch.Tensor,
) -> torch.Tensor:
    """The regression target for training."""
    if parameterization == "eps":
        return eps
    if parameterization == "x0":
        return x0
    if parameterization == "v":
        return alpha * eps - sigma_vp * x0
    raise ValueError(f"unknown parameterization {parameterization!r}")


def predictions_from(
    parameterization: Parameterization,
    output: torch.Tensor,
    x_t: torch.Tensor,
    alpha: torch.Tensor,
    sigma_vp: torch.Tensor,
) -> Predictions:
    """Convert a network output at VP input ``x_t`` to (x0, eps) predictions."""
    if parameterization == "eps":
        eps = output
        x0 = (x_t - sigma_vp * eps) / alpha
    elif parameterization == "x0":
        x0 = output
        eps = (x_t - alpha * x0) / sigma_vp
    elif parameterization == "v":
        x0 = alpha * x_t - sigma_vp * output
        eps = sigma_vp * x_t + alpha * output
    else:
        raise ValueError(f"unknown parameterization {parameterization!r}")
    return Predictions(x0=x0, eps=eps)


def eps_from_x0(x0: torch.Tensor, x_t: torch.Tensor, alpha: torch.Tensor, sigma_vp: torch.Tensor) -> torch.Tensor:
    """Re-derive eps after x0 was modified (e.g. clipped by dynamic thresholding)."""
    return (x_t - alpha * x0) / sigma_vp
