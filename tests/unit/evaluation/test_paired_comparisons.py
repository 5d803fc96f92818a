"""Settings compared with the first one on the same prompts and noise: paired difference, the
images whose verdict changed, and the grid that shows them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mjexp.evaluate import add_paired_comparisons, disagreement_grids, verdict_changes


def test_verdict_changes_counts_both_directions() -> None:
    baseline = np.array([1.0, 2 / 3, 1.0, 0.0, 1.0, 1 / 3])
    other = np.array([1.0, 1.0, 2 / 3, 1.0, 1.0, 2 / 3])
    fixed, broken = verdict_changes(baseline, other)
    assert fixed.tolist() == [1, 3] and broken.tolist() == [2]  # image 5 improved but is still not all right


def test_paired_comparison_records_difference_and_changes() -> None:
    records = [{"label": "g1"}, {"label": "g3"}]
    baseline, other = np.array([1.0, 0.5, 0.0, 1.0]), np.array([1.0, 1.0, 1.0, 0.5])
    add_paired_comparisons(records, [baseline, other])
    paired = records[1]["paired_vs_first"]
    diff = other - baseline
    assert paired["difference"] == pytest.approx(diff.mean())
    assert paired["standard_error"] == pytest.approx(diff.std(ddof=1) / 2)
    assert (paired["baseline"], paired["fixed"], paired["broken"]) == ("g1", 2, 1)


def _png(path: Path, value: int) -> Path:
    Image.fromarray(np.full((4, 4, 3), value, dtype=np.uint8)).save(path)
    return path


def test_disagreement_grid_puts_the_baseline_above_the_same_item(tmp_path: Path) -> None:
    base_files = [_png(tmp_path / f"b{i}.png", 10 + i) for i in range(5)]
    other_files = [_png(tmp_path / f"o{i}.png", 100 + i) for i in range(5)]
    records = [{"label": "g1"}, {"label": "g5"}]
    flags = [np.array([0.0, 1.0, 0.5, 1.0, 1.0]), np.array([1.0, 1.0, 1.0, 0.0, 1.0])]
    grids = disagreement_grids(records, flags, [base_files, other_files], limit=4)
    fixed = next(v for k, v in grids.items() if ": fixed (2 images" in k)
    broken = next(v for k, v in grids.items() if ": broken (1 images" in k)
    assert fixed.shape == (8, 3, 4, 4) and fixed.dtype == torch.uint8
    assert fixed[:, 0, 0, 0].tolist() == [10, 12, 255, 255, 100, 102, 255, 255]  # items 0 and 2, padded rows
    assert broken[:, 0, 0, 0].tolist() == [13, 255, 255, 255, 103, 255, 255, 255]
