"""FID and KID of one extractor's features, each with its bootstrap interval and sample counts.

Sample-count rules: a d-dimensional covariance needs n >= d + 1 samples to be full rank, so fewer
is an error naming the minimum; Inception FIDs from fewer than 10,000 images carry a warning that
they are not comparable with published numbers (FID's bias grows as n shrinks).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from evaluation.bootstrap import fid_interval, kid_interval
from evaluation.fid import as_float64, fid_from_features
from evaluation.kid import kid

PUBLISHED_FID_SAMPLES = 10_000


def check_sample_count(n_generated: int, n_reference: int, dim: int, extractor: str) -> None:
    """Error below d + 1 samples in either set; for inception, warn below 10,000."""
    minimum = dim + 1
    for label, n in (("generated", n_generated), ("reference", n_reference)):
        if n < minimum:
            raise ValueError(
                f"fid/{extractor} needs at least {minimum} {label} images (feature dimension {dim} + 1), got {n}"
            )
    if extractor.startswith("inception") and min(n_generated, n_reference) < PUBLISHED_FID_SAMPLES:
        warnings.warn(
            f"fid/inception from {n_generated} generated and {n_reference} reference images is not comparable "
            f"with published FIDs (computed from >= {PUBLISHED_FID_SAMPLES} images); compare only within this study",
            stacklevel=2,
        )


def distribution_metrics(
    generated: torch.Tensor | np.ndarray,
    reference: torch.Tensor | np.ndarray,
    extractor: str,
    *,
    bootstrap: int = 200,
    seed: int = 0,
    level: float = 0.95,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    device: str | torch.device = "cpu",
    feature_rank: int | None = None,
) -> tuple[dict[str, float], dict[str, dict[str, object]]]:
    """Metrics ``fid/<extractor>`` and ``kid/<extractor>`` (+ ``/ci_low``, ``/ci_high``, ``kid/../std``)
    and their params (sample counts, bootstrap settings, KID subsets).

    Cost: each FID bootstrap replicate needs two d x d covariances (O(n d^2)) and eigen-
    decompositions (O(d^3)); for Inception (d = 2048) at 10k images use a GPU ``device`` or fewer
    replicates. KID's replicates reuse one pass over the kernel (O(n^2 d)). ``feature_rank``: the
    rank the extractor's features reach by construction (``Extractor.feature_rank``), so FID warns
    only about covariances below it.
    """
    n_gen, n_ref = len(generated), len(reference)
    if generated.shape[1] != reference.shape[1]:
        raise ValueError(f"feature dimensions differ: generated {generated.shape[1]}, reference {reference.shape[1]}")
    check_sample_count(n_gen, n_ref, generated.shape[1], extractor)
    generated, reference = as_float64(generated).to(device), as_float64(reference).to(device)
    fid = fid_from_features(generated, reference, feature_rank)
    fid_ci = fid_interval(generated, reference, fid, bootstrap, seed, level, device)
    kid_result = kid(generated, reference, kid_subsets, kid_subset_size, seed)
    kid_ci = kid_interval(generated, reference, bootstrap, seed, level, device=device)
    counts = {"n_generated": n_gen, "n_reference": n_ref, "feature_dim": int(generated.shape[1])}
    metrics = {
        f"fid/{extractor}": fid,
        f"fid/{extractor}/ci_low": fid_ci.low,
        f"fid/{extractor}/ci_high": fid_ci.high,
        f"kid/{extractor}": kid_result.mean,
        f"kid/{extractor}/std": kid_result.std,
        f"kid/{extractor}/ci_low": kid_ci.low,
        f"kid/{extractor}/ci_high": kid_ci.high,
    }
    params = {
        f"fid/{extractor}": {**counts, "bootstrap": fid_ci.as_params(), "precision": "float64"},
        f"kid/{extractor}": {
            **counts,
            "bootstrap": kid_ci.as_params(),
            "kernel": "polynomial degree 3, gamma 1/d, coef0 1",
            "subsets": kid_result.subsets,
            "subset_size": kid_result.subset_size,
            "subset_seed": kid_result.seed,
            "precision": "float64",
        },
    }
    return metrics, params
