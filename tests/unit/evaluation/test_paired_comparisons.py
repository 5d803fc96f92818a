"""Settings compared with the first one on the same prompts and noise: each metric's paired test
(through the registry, from the states its scoring keeps), the images whose verdict changed, and
the grid that shows them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evaluation.diversity import prompt_diversity
from evaluation.bootstrap import fid_difference
from evaluation.patch_fid import patch_fid_difference, patch_moments
from evaluation.metrics import PairingSettings, add_paired_comparisons
from evaluation.metrics.attribute_accuracy import verdict_changes
from mjexp.runs.eval_run.paired_settings import disagreement_grids


def pair(records: list[dict], metric: str, states: list, bootstrap: int = 20) -> None:
    add_paired_comparisons(records, [{metric: state} for state in states], PairingSettings(bootstrap, seed=0))


def test_verdict_changes_counts_both_directions() -> None:
    baseline = np.array([1.0, 2 / 3, 1.0, 0.0, 1.0, 1 / 3])
    other = np.array([1.0, 1.0, 2 / 3, 1.0, 1.0, 2 / 3])
    fixed, broken = verdict_changes(baseline, other)
    assert fixed.tolist() == [1, 3] and broken.tolist() == [2]  # image 5 improved but is still not all right


def test_paired_comparison_records_difference_and_changes() -> None:
    records = [{"label": "g1"}, {"label": "g3"}]
    baseline, other = np.array([1.0, 0.5, 0.0, 1.0]), np.array([1.0, 1.0, 1.0, 0.5])
    pair(records, "attr_acc", [baseline, other])
    paired = records[1]["paired_vs_first"]
    diff = other - baseline
    assert paired["difference"] == pytest.approx(diff.mean())
    assert paired["standard_error"] == pytest.approx(diff.std(ddof=1) / 2)
    assert (paired["baseline"], paired["fixed"], paired["broken"]) == ("g1", 2, 1)


def test_paired_diversity_pairs_the_same_prompts() -> None:
    """Per-prompt diversity of two settings, paired by prompt whatever order the prompts came in."""
    e1, e2, e3 = [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]
    # Baseline: prompt a diverse (1), b identical (0), c opposite (2). Other: a 0, b 1, c 2; "d" only here.
    base = prompt_diversity(torch.tensor([e1, e2, e1, e1, e1, e3]), ["a", "a", "b", "b", "c", "c"])
    other = prompt_diversity(torch.tensor([e1, e2, e1, e3, e2, e2, e1, e2]), ["b", "b", "c", "c", "a", "a", "d", "d"])
    records = [{"label": "g1"}, {"label": "g3"}, {"label": "none"}]
    one_shared = prompt_diversity(torch.tensor([e1, e2, e1, e2]), ["a", "a", "x", "x"])
    pair(records, "diversity", [{"diversity/judge": base}, {"diversity/judge": other}, {"diversity/judge": one_shared}])
    assert records[1]["paired_diversity_vs_first"]["baseline"] == "g1"
    paired = records[1]["paired_diversity_vs_first"]["metrics"]["diversity/judge"]
    diff = np.array([0.0 - 1.0, 1.0 - 0.0, 2.0 - 2.0])  # a, b, c
    assert paired["difference"] == pytest.approx(diff.mean())
    assert paired["standard_error"] == pytest.approx(diff.std(ddof=1) / np.sqrt(3))
    assert paired["n_prompts"] == 3
    assert "paired_diversity_vs_first" not in records[2]  # one shared prompt: no paired SE


def _png(path: Path, value: int, size: int = 4) -> Path:
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)
    return path


def test_disagreement_grid_puts_the_baseline_above_the_same_item(tmp_path: Path) -> None:
    base_files = [_png(tmp_path / f"b{i}.png", 10 + i) for i in range(5)]
    other_files = [_png(tmp_path / f"o{i}.png", 100 + i) for i in range(5)]
    records = [{"label": "g1"}, {"label": "g5"}]
    flags = [np.array([0.0, 1.0, 0.5, 1.0, 1.0]), np.array([1.0, 1.0, 1.0, 0.0, 1.0])]
    grids = disagreement_grids(records, flags, [base_files, other_files], limit=4)
    fixed = next(v for k, v in grids.items() if ": fixed (2 images" in k)
    broken = next(v for k, v in grids.items() if ": broken (1 images" in k)
    assert fixed.row_labels == ("g1", "g5") and fixed.columns == 4  # each row says which setting it shows
    fixed, broken = fixed.images, broken.images
    assert fixed.shape == (8, 3, 4, 4) and fixed.dtype == torch.uint8
    assert fixed[:, 0, 0, 0].tolist() == [10, 12, 255, 255, 100, 102, 255, 255]  # items 0 and 2, padded rows
    assert broken[:, 0, 0, 0].tolist() == [13, 255, 255, 255, 103, 255, 255, 255]


def test_disagreement_grid_of_a_larger_setting_shows_both_rows_at_its_size(tmp_path: Path) -> None:
    """A hires setting (8 px) against a plain first setting (4 px): the first row is enlarged."""
    base_files = [_png(tmp_path / f"b{i}.png", 10 + i) for i in range(2)]
    other_files = [_png(tmp_path / f"o{i}.png", 100 + i, size=8) for i in range(2)]
    flags = [np.array([1.0, 0.0]), np.array([0.0, 1.0])]
    grids = disagreement_grids([{"label": "plain"}, {"label": "hires"}], flags, [base_files, other_files], limit=2)
    fixed = next(v for k, v in grids.items() if ": fixed" in k).images
    assert fixed.shape == (4, 3, 8, 8) and fixed[:, 0, 7, 7].tolist() == [11, 255, 101, 255]


def test_paired_patch_fid_only_between_settings_of_one_size() -> None:
    """A plain setting (8 px) first, then another plain one and a hires one (16 px): only the
    plain one is paired with the first, against the reference at its size (kept with its state)."""
    g = torch.Generator().manual_seed(0)
    images = {size: torch.randint(0, 256, (12, 3, size, size), dtype=torch.uint8, generator=g) for size in (8, 16)}
    references = {size: patch_moments(torch.randint(0, 256, (20, 3, size, size), dtype=torch.uint8, generator=g))
                  for size in (8, 16)}
    patches = [patch_moments(images[8]), patch_moments(images[8].flip(-1)), patch_moments(images[16])]
    records = [{"label": "a"}, {"label": "b"}, {"label": "hires"}]
    pair(records, "patch_fid", [(p, references[p.size[0]]) for p in patches])
    expected = patch_fid_difference(patches[1], patches[0], references[8], 20, 0)
    paired = records[1]["paired_patch_fid_vs_first"]
    assert paired["baseline"] == "a" and paired["difference"] == pytest.approx(expected.difference)
    assert paired["standard_error"] == pytest.approx(expected.standard_error)
    assert "paired_patch_fid_vs_first" not in records[2]


def test_paired_fid_of_each_setting_against_the_first() -> None:
    g = torch.Generator().manual_seed(0)
    reference = torch.randn(60, 4, generator=g)
    first = torch.randn(30, 4, generator=g)
    shifted = first + 0.5  # the same items, moved: FID rises, paired SE small
    records = [{"label": "a"}, {"label": "b"}, {"label": "fewer"}]
    pair(records, "fid", [{"judge": (f, reference, None)} for f in (first, shifted, first[:20])], bootstrap=30)
    expected = fid_difference(shifted, first, reference, 30, 0)
    paired = records[1]["paired_fid_vs_first"]
    assert paired["baseline"] == "a"
    assert paired["metrics"]["fid/judge"]["difference"] == pytest.approx(expected.difference)
    assert paired["metrics"]["fid/judge"]["z"] == pytest.approx(expected.difference / expected.standard_error)
    assert expected.difference > 0.5 and "paired_fid_vs_first" not in records[2]  # other items: no pairing
