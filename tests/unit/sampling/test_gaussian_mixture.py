"""The closed-form mixture denoiser and moments against independent Monte-Carlo estimates.

Tolerances are 4 Monte-Carlo standard errors, each SE estimated from the same draws.
"""

from __future__ import annotations

import math

import pytest
import torch

from mjexp.sampling.denoiser import Denoiser
from mjexp.testing.gaussian_mixture import GaussianMixture, reference_mixture
from sampling_helpers import linear_schedule

MIXTURE = reference_mixture()


@pytest.fixture(scope="module")
def draws() -> tuple[torch.Tensor, torch.Tensor]:
    return MIXTURE.sample(400_000, torch.Generator().manual_seed(0))


def test_posterior_mean_matches_importance_sampling(draws: tuple[torch.Tensor, torch.Tensor]) -> None:
    """E[x0 | x_t] = sum_i w_i x0_i / sum_i w_i with w_i = N(x_t; a x0_i, s^2 I), x0_i ~ data."""
    x0, _ = draws
    alpha, sigma_vp = 0.6, 0.8
    x_t = torch.tensor([[-1.5, 0.3], [1.0, 1.0], [0.4, -1.2], [0.0, 0.0]], dtype=torch.float64)
    exact, resp = MIXTURE.posterior(x_t, torch.tensor(alpha), torch.tensor(sigma_vp))
    for row in range(len(x_t)):
        log_w = -((x_t[row] - alpha * x0) ** 2).sum(1) / (2 * sigma_vp**2)
        w = torch.softmax(log_w, dim=0)
        estimate = (w[:, None] * x0).sum(0)
        se = ((w[:, None] ** 2) * (x0 - estimate) ** 2).sum(0).sqrt()  # delta method for a ratio estimator
        assert ((exact[row] - estimate).abs() < 4 * se).all(), (row, exact[row], estimate, se)
    torch.testing.assert_close(resp.sum(1), torch.ones(4, dtype=torch.float64))


def test_zero_snr_gives_the_data_mean() -> None:
    x_t = torch.randn(5, 2, dtype=torch.float64)
    x0, resp = MIXTURE.posterior(x_t, torch.tensor(0.0), torch.tensor(1.0))
    torch.testing.assert_close(x0, MIXTURE.mean().expand(5, 2))
    torch.testing.assert_close(resp, MIXTURE.weights.expand(5, 3))


def test_moments_match_samples(draws: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, labels = draws
    n = len(x)
    mean_se = x.std(0) / math.sqrt(n)
    assert ((x.mean(0) - MIXTURE.mean()).abs() < 4 * mean_se).all()
    y = x - MIXTURE.mean()
    products = y[:, :, None] * y[:, None, :]  # (n, d, d)
    cov_se = products.std(0) / math.sqrt(n)
    assert ((products.mean(0) - MIXTURE.covariance()).abs() < 4 * cov_se).all()
    squares = (products - MIXTURE.covariance()) ** 2
    var_se = squares.std(0) / math.sqrt(n)
    assert ((squares.mean(0) - MIXTURE.product_variance()).abs() < 4 * var_se).all()
    assert (MIXTURE.classify(x) != labels).sum() == 0  # modes are separated as documented


def test_denoise_is_consistent_with_the_forward_process() -> None:
    x_t = torch.randn(6, 2, dtype=torch.float64)
    alpha = torch.full((6,), 0.3, dtype=torch.float64)  # per-row coefficients take the general path
    pred = MIXTURE.denoise(x_t, alpha, (1 - alpha**2).sqrt())
    torch.testing.assert_close(x_t, 0.3 * pred.x0 + math.sqrt(1 - 0.09) * pred.eps)
    scalar = MIXTURE.denoise(x_t, torch.tensor(0.3), torch.tensor(math.sqrt(1 - 0.09)))
    torch.testing.assert_close(pred.x0, scalar.x0)


@pytest.mark.parametrize("zero_snr", [False, True])
def test_parameterised_views_agree(zero_snr: bool) -> None:
    schedule = linear_schedule(zero_snr)
    x = torch.randn(8, 2, 1, 1, dtype=torch.float64) * 3
    views = ["v", "x0"] if zero_snr else ["eps", "v", "x0"]
    for sigma in [0.05, 1.0, 20.0] + ([math.inf] if zero_snr else []):
        preds = [Denoiser(MIXTURE.network(schedule, p), schedule)(x, sigma, {}) for p in views]  # type: ignore[arg-type]
        for other in preds[1:]:
            torch.testing.assert_close(other.x0, preds[0].x0, rtol=1e-9, atol=1e-9)


def test_invalid_mixtures_are_rejected() -> None:
    eye = torch.eye(2).expand(2, 2, 2)
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixture(torch.tensor([0.5, 0.6]), torch.zeros(2, 2), eye)
    with pytest.raises(ValueError, match="need weights"):
        GaussianMixture(torch.tensor([1.0]), torch.zeros(2, 2), eye)
    with pytest.raises(torch.linalg.LinAlgError):
        GaussianMixture(torch.tensor([0.5, 0.5]), torch.zeros(2, 2), -eye)


def test_z_scores_are_calibrated() -> None:
    """Over 300 independent exact samples of 1,000 the scores have unit spread: the derived standard
    errors are right (the std of 300 unit normals has SE 1/sqrt(600) ~ 0.04; band = 3.5 SE)."""
    x, _ = MIXTURE.sample(300_000, torch.Generator().manual_seed(4))
    scores = [torch.cat(list(MIXTURE.z_scores(chunk).values())) for chunk in x.split(1_000)]
    spread = torch.stack(scores).std(0)  # per statistic
    assert ((spread - 1).abs() < 0.15).all(), spread
    shifted = MIXTURE.z_scores(x[:10_000] + torch.tensor([0.1, 0.0], dtype=torch.float64))
    assert float(shifted["mean"][0]) > 3  # a 0.04-sd bias is visible at n = 10,000
