"""KID: torch-fidelity's numbers on the same features, unbiasedness, and the bootstrap statistic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_fidelity.metric_kid import kid_features_to_metric

from evaluation.bootstrap import kid_interval, resample_counts
from evaluation.kid import PolynomialKernel, kid, mmd2_resampled, mmd2_unbiased


def test_matches_torch_fidelity_on_the_same_features() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(150, 10)), rng.normal(size=(120, 10)) + 0.2
    ours = kid(x, y, subsets=30, subset_size=50, seed=7)
    theirs = kid_features_to_metric(
        torch.from_numpy(x), torch.from_numpy(y), kid_subsets=30, kid_subset_size=50, rng_seed=7, verbose=False
    )
    # Same subsets (same RandomState stream), both float64 here: equal to rounding.
    assert ours.mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-10)
    assert ours.std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-10)


def test_full_sample_estimator_against_direct_formula() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(30, 3))
    k = PolynomialKernel()
    kxx, kyy, kxy = (k(torch.from_numpy(a), torch.from_numpy(b)).numpy() for a, b in ((x, x), (y, y), (x, y)))
    expected = (
        (kxx.sum() - np.trace(kxx)) / (40 * 39) + (kyy.sum() - np.trace(kyy)) / (30 * 29) - 2 * kxy.mean()
    )
    assert mmd2_unbiased(x, y) == pytest.approx(expected, rel=1e-12)
    # Equal sizes below subset_size: every subset is the whole set, so KID is the full-sample value.
    assert kid(x[:30], y, subsets=3, subset_size=1000).mean == pytest.approx(mmd2_unbiased(x[:30], y), rel=1e-12)


def test_unbiased_near_zero_for_one_distribution() -> None:
    # Mean of many independent estimates is within 3 standard errors of the true value 0,
    # while the biased (V-statistic) version is clearly positive.
    rng = np.random.default_rng(2)
    unbiased, biased = [], []
    k = PolynomialKernel()
    for _ in range(300):
        x, y = rng.normal(size=(20, 3)), rng.normal(size=(20, 3))
        unbiased.append(mmd2_unbiased(x, y))
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        biased.append(float(k(tx, tx).mean() + k(ty, ty).mean() - 2 * k(tx, ty).mean()))
    se = np.std(unbiased, ddof=1) / np.sqrt(len(unbiased))
    assert abs(np.mean(unbiased)) < 3 * se
    assert np.mean(biased) > 10 * se


def test_resampled_statistic_is_unbiased_for_the_estimate() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(25, 2)), rng.normal(size=(30, 2)) + 0.3
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    values = mmd2_resampled(x, y, resample_counts(25, 4000, g1), resample_counts(30, 4000, g2)).numpy()
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert abs(values.mean() - mmd2_unbiased(x, y)) < 3 * se


def test_resample_counts_sum_to_n() -> None:
    counts = resample_counts(17, 5, torch.Generator().manual_seed(0))
    assert counts.shape == (5, 17) and torch.all(counts.sum(dim=1) == 17)


def test_interval_covers_zero_for_one_distribution() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(200, 4)), rng.normal(size=(200, 4))
    interval = kid_interval(x, y, replicates=200, seed=0)
    assert interval.low <= 0.0 <= interval.high
    shifted = kid_interval(x, y + 1.0, replicates=200, seed=0)
    assert shifted.low > 0.0
