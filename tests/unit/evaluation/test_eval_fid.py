"""Fréchet distance against closed forms and an independent scipy reference; FID validity checks."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from evaluation.bootstrap import fid_interval
from evaluation.distribution import check_sample_count, distribution_metrics
from evaluation.fid import GaussianStats, ImaginaryComponentError, fid_from_features, frechet_distance


def random_rotation(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def test_commuting_covariances_match_closed_form() -> None:
    # Same eigenbasis: d^2 = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
    rng = np.random.default_rng(0)
    q = random_rotation(6, rng)
    a, b = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T) == pytest.approx(expected, rel=1e-10)


def test_non_commuting_2d_closed_form() -> None:
    # 2x2: tr sqrt(S1 S2) = sqrt(tr(S1 S2) + 2 sqrt(det S1 det S2)), since the eigenvalues are >= 0.
    s1 = np.array([[2.0, 0.7], [0.7, 1.0]])
    s2 = np.array([[0.5, -0.2], [-0.2, 3.0]])
    mu1, mu2 = np.array([0.3, -1.0]), np.array([1.0, 0.5])
    tr_sqrt = math.sqrt(np.trace(s1 @ s2) + 2 * math.sqrt(np.linalg.det(s1) * np.linalg.det(s2)))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-12)


def test_matches_scipy_sqrtm_reference() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(400, 12)), rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12)) * 0.3 + 0.2
    mu1, s1, mu2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real)
    assert fid_from_features(x, y) == pytest.approx(reference, rel=1e-9)


def test_gaussian_stats_match_numpy() -> None:
    x = np.random.default_rng(2).normal(size=(50, 4))
    stats = GaussianStats.from_features(x)
    assert stats.mu.dtype == torch.float64 and stats.sigma.dtype == torch.float64
    np.testing.assert_allclose(stats.mu.numpy(), x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.sigma.numpy(), np.cov(x, rowvar=False), rtol=1e-12)
    counts = torch.tensor([2.0] + [1.0] * 49)  # a resample that repeats row 0
    repeated = GaussianStats.from_features(x, counts)
    np.testing.assert_allclose(repeated.sigma.numpy(), np.cov(np.vstack([x[:1], x]), rowvar=False), rtol=1e-12)


def test_set_against_itself_is_zero() -> None:
    x = np.random.default_rng(3).normal(size=(200, 16))
    assert abs(fid_from_features(x, x)) < 1e-9


def test_near_singular_covariance_is_exact_and_warned() -> None:
    # Eigenvalues down to 1e-14 and an exactly singular direction: the closed form still holds.
    rng = np.random.default_rng(4)
    q = random_rotation(5, rng)
    a = np.array([2.0, 1.0, 1e-3, 1e-14, 0.0])
    b = np.array([1.0, 0.5, 2e-3, 1e-12, 0.0])
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    with pytest.warns(UserWarning, match="singular"):
        value = frechet_distance(np.zeros(5), q @ np.diag(a) @ q.T, np.zeros(5), q @ np.diag(b) @ q.T)
    # sqrt is not Lipschitz at 0: rounding of ~eps * |S| in a zero eigenvalue moves its square root
    # by ~sqrt(eps * |S|) ~ 2e-8, for any algorithm; 1e-6 bounds that over the d = 5 directions.
    assert value == pytest.approx(expected, abs=1e-6)


def test_rank_deficient_features_match_regularised_reference() -> None:
    # Duplicated feature columns make both covariances singular; scipy needs eps*I, we do not.
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(300, 4)), rng.normal(size=(300, 4)) + 0.5
    x, y = np.hstack([x, x[:, :2]]), np.hstack([y, y[:, :2]])
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    offset = np.eye(6) * 1e-10
    covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset)).real
    diff = x.mean(0) - y.mean(0)
    reference = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    with pytest.warns(UserWarning, match="singular"):
        assert fid_from_features(x, y) == pytest.approx(reference, rel=1e-6)


def test_expected_rank_silences_only_the_deficiency_features_have_by_construction() -> None:
    # Rank 4 of 6 (two duplicated columns): warned unless 4 is the rank the features can reach.
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(300, 4)), rng.normal(size=(300, 4))
    x, y = np.hstack([x, x[:, :2]]), np.hstack([y, y[:, :2]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exact = fid_from_features(x, y, expected_rank=4)
    with pytest.warns(UserWarning, match=r"numerical rank 4 of 6"):
        assert fid_from_features(x, y, expected_rank=5) == exact
    with pytest.warns(UserWarning, match=r"numerical rank 4 of 6"):
        fid_from_features(x, y)


def test_non_psd_covariance_is_an_imaginary_component_error() -> None:
    bad = np.diag([1.0, -0.25])
    with pytest.raises(ImaginaryComponentError, match=r"imaginary component of size ~0\.5"):
        frechet_distance(np.zeros(2), bad, np.zeros(2), np.eye(2))


def test_two_draws_of_one_distribution_near_zero_within_interval() -> None:
    rng = np.random.default_rng(6)
    cov = np.diag(np.linspace(0.5, 2.0, 8))
    x = rng.multivariate_normal(np.zeros(8), cov, size=500)
    y = rng.multivariate_normal(np.zeros(8), cov, size=500)
    shifted = y + 0.5
    fid = fid_from_features(x, y)
    interval = fid_interval(x, y, fid, replicates=200, seed=0)
    assert fid < 0.2 * fid_from_features(x, shifted)
    assert interval.low <= 0.0 <= interval.high
    assert interval.replicates == 200 and interval.seed == 0
    far = fid_from_features(x, shifted)
    far_interval = fid_interval(x, shifted, far, replicates=200, seed=0)
    assert far_interval.low > 0.0 and far_interval.low <= 8 * 0.25 <= far_interval.high  # true FID = |mu|^2 = 2


def test_minimum_sample_count_is_named() -> None:
    with pytest.raises(ValueError, match="at least 17 generated images"):
        check_sample_count(16, 100, 16, "judge")
    with pytest.raises(ValueError, match="at least 17 reference images"):
        distribution_metrics(np.zeros((20, 16)), np.zeros((16, 16)), "judge", bootstrap=10)


def test_inception_below_ten_thousand_warns() -> None:
    with pytest.warns(UserWarning, match="not comparable with published FIDs"):
        check_sample_count(5000, 50000, 2048, "inception")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_sample_count(5000, 5000, 64, "judge")
        check_sample_count(10000, 10000, 2048, "inception")


def test_distribution_metrics_names_and_params() -> None:
    rng = np.random.default_rng(7)
    metrics, params = distribution_metrics(rng.normal(size=(60, 4)), rng.normal(size=(80, 4)), "judge", bootstrap=20, seed=3)
    assert set(metrics) == {
        "fid/judge", "fid/judge/ci_low", "fid/judge/ci_high",
        "kid/judge", "kid/judge/std", "kid/judge/ci_low", "kid/judge/ci_high",
    }
    assert params["fid/judge"]["n_generated"] == 60 and params["fid/judge"]["n_reference"] == 80
    assert params["kid/judge"]["bootstrap"]["replicates"] == 20 and params["kid/judge"]["bootstrap"]["seed"] == 3
    assert metrics["fid/judge/ci_low"] <= metrics["fid/judge/ci_high"]


def test_basic_interval_never_inverts_at_the_lower_bound() -> None:
    """Resamples far above the estimate (bias larger than the estimate) collapse onto the bound."""
    from evaluation.bootstrap import basic_interval

    replicates = np.linspace(0.05, 0.08, 200)  # every resample well above 2 * estimate
    interval = basic_interval(0.01, replicates, 0.95, seed=0, low_bound=0.0)
    assert interval.low == interval.high == 0.0
    inside = basic_interval(1.0, np.linspace(0.9, 1.3, 200), 0.95, seed=0, low_bound=0.0)
    assert 0.0 < inside.low < inside.high
