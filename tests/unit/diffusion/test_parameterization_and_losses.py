"""Prediction conversions and loss weights against their definitions."""

import pytest
import torch

from mjexp.diffusion.losses import loss_weights
from mjexp.diffusion.parameterization import check_parameterization, predictions_from, target_from


@pytest.mark.parametrize("param", ["eps", "v", "x0"])
def test_exact_target_recovers_x0_and_eps(param: str) -> None:
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    alpha_bar = torch.tensor([0.999, 0.7, 0.2, 0.01]).view(4, 1, 1, 1)
    alpha, sigma = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    x_t = alpha * x0 + sigma * eps
    pred = predictions_from(param, target_from(param, x0, eps, alpha, sigma), x_t, alpha, sigma)
    torch.testing.assert_close(pred.x0, x0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(pred.eps, eps, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("param", ["v", "x0"])
def test_zero_snr_step_is_well_defined_for_v_and_x0(param: str) -> None:
    x0, eps = torch.randn(2, 3), torch.randn(2, 3)
    alpha, sigma = torch.tensor(0.0), torch.tensor(1.0)
    pred = predictions_from(param, target_from(param, x0, eps, alpha, sigma), eps, alpha, sigma)
    torch.testing.assert_close(pred.x0, x0)
    torch.testing.assert_close(pred.eps, eps)


def test_zero_snr_with_eps_is_rejected_with_reason() -> None:
    with pytest.raises(ValueError, match="parameterization=v or x0"):
        check_parameterization("eps", zero_terminal_snr=True)
    with pytest.raises(ValueError, match="unknown parameterization"):
        check_parameterization("score", zero_terminal_snr=False)


def test_min_snr_weights_match_paper() -> None:
    snr = torch.tensor([0.0, 0.5, 5.0, 50.0])
    gamma = 5.0
    torch.testing.assert_close(loss_weights(snr[1:], "eps", "min_snr", gamma), torch.tensor([1.0, 1.0, 0.1]))
    torch.testing.assert_close(loss_weights(snr, "v", "min_snr", gamma), torch.tensor([0.0, 0.5 / 1.5, 5 / 6, 5 / 51]))
    torch.testing.assert_close(loss_weights(snr, "x0", "min_snr", gamma), torch.tensor([0.0, 0.5, 5.0, 5.0]))
    torch.testing.assert_close(loss_weights(snr, "v", "uniform"), torch.ones(4))
