"""Paired bootstrap of FID differences against exact identities and an analytic standard error."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from evaluation.bootstrap import fid_difference
from evaluation.fid import fid_from_features


def test_estimate_is_the_difference_of_the_two_fids() -> None:
    g = torch.Generator().manual_seed(0)
    a, b, y = (torch.randn(300, 5, generator=g, dtype=torch.float64) * s for s in (1.0, 1.3, 1.0))
    result = fid_difference(a, b, y, replicates=20)
    assert result.difference == pytest.approx(fid_from_features(a, y) - fid_from_features(b, y), abs=1e-12)


def test_a_setting_against_itself_differs_by_exactly_zero() -> None:
    g = torch.Generator().manual_seed(1)
    a, y = torch.randn(200, 4, generator=g), torch.randn(300, 4, generator=g)
    result = fid_difference(a, a, y, replicates=50)
    assert result.difference == 0.0 and result.standard_error == 0.0
    assert (result.interval.low, result.interval.high) == (0.0, 0.0)


def test_paired_standard_error_matches_the_analytic_one() -> None:
    """Arm b is arm a shifted by delta, item by item: the covariances are equal, so
    FID(b) - FID(a) = |delta|^2 + 2 delta . (mean_a - mean_y), whose standard deviation is
    2 |delta| sqrt(1/n + 1/m) for unit-covariance features. Resampling the arms independently
    would instead add both FIDs' own sampling noise."""
    n, m, d = 2000, 3000, 4
    g = torch.Generator().manual_seed(2)
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(m, d, generator=g, dtype=torch.float64)
    delta = torch.tensor([0.3, -0.2, 0.1, 0.0], dtype=torch.float64)
    result = fid_difference(a + delta, a, y, replicates=400, seed=3)
    analytic_se = 2 * float(delta.norm()) * math.sqrt(1 / n + 1 / m)
    # 400 replicates estimate a standard deviation to ~3.5% (1/sqrt(2R)); allow 5 of those.
    assert result.standard_error == pytest.approx(analytic_se, rel=0.18)
    assert abs(result.difference - float(delta @ delta)) < 3 * analytic_se
    assert result.interval.low < float(delta @ delta) < result.interval.high


def test_unpaired_arms_are_refused() -> None:
    with pytest.raises(ValueError, match="same items in both arms"):
        fid_difference(torch.randn(10, 3), torch.randn(12, 3), torch.randn(20, 3))


def test_feature_rank_bound_is_passed_to_the_rank_warning() -> None:
    gen = torch.Generator().manual_seed(3)
    a, b, y = (torch.randn(200, 3, generator=gen, dtype=torch.float64) for _ in range(3))
    a, b, y = (torch.cat([x, x[:, :1]], dim=1) for x in (a, b, y))  # rank 3 of 4 by construction
    with pytest.warns(UserWarning, match=r"numerical rank 3 of 4"):
        fid_difference(a, b, y, replicates=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fid_difference(a, b, y, replicates=10, feature_rank=3)
