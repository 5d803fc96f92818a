"""Patch FID against windows cut out by hand, and its behaviour on sharp, blurred and noisy images."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from evaluation.fid import fid_from_features
from evaluation.patch_fid import (
    PatchAccumulator, centred_windows, patch_fid, patch_fid_difference, patch_fid_value, patch_moments,
)
from evaluation.refstats import ReferenceCache, ReferenceKey


def windows_by_hand(images: torch.Tensor, k: int) -> torch.Tensor:
    """Every k x k window of every image as a row (channel, row, column order), each channel
    minus its window mean: python loops, independent of unfold."""
    rows = []
    x = images.double() / 255
    n, c, h, w = x.shape
    for i in range(n):
        for top in range(h - k + 1):
            for left in range(w - k + 1):
                window = x[i, :, top : top + k, left : left + k]
                rows.append((window - window.mean(dim=(1, 2), keepdim=True)).reshape(-1))
    return torch.stack(rows)


def squares(n: int, size: int, seed: int) -> torch.Tensor:
    """uint8 images of one randomly placed, randomly coloured square with hard edges."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    for i in range(n):
        side = int(torch.randint(size // 4, size // 2 + 1, (1,), generator=g))
        top, left = (int(v) for v in torch.randint(0, size - side + 1, (2,), generator=g))
        images[i, :, top : top + side, left : left + side] = torch.randint(60, 256, (3, 1, 1), generator=g).to(torch.uint8)
    return images


def test_centred_windows_by_hand() -> None:
    image = torch.tensor([[[0, 51, 102], [153, 204, 255], [0, 0, 0]]], dtype=torch.uint8)[None]  # 1 x 1 x 3 x 3
    windows = centred_windows(image, patch_size=2)
    first = torch.tensor([0, 0.2, 0.6, 0.8], dtype=torch.float64)  # top-left window, in [0, 1]
    assert windows.shape == (1, 4, 4)
    assert torch.allclose(windows[0, 0], first - first.mean())
    assert torch.allclose(windows, windows_by_hand(image, 2)[None])
    with pytest.raises(ValueError, match="uint8"):
        centred_windows(image.float())
    with pytest.raises(ValueError, match="smaller than the 4x4 window"):
        centred_windows(image)


@pytest.mark.parametrize("groups", [256, 5])
def test_patch_fid_is_the_fid_of_the_windows(groups: int) -> None:
    """The grouped moments give exactly the FID of all windows stacked as feature rows, whatever
    the grouping and however the images arrive in batches."""
    generated, reference = squares(12, 9, seed=0), squares(20, 9, seed=1)
    accumulator = PatchAccumulator(len(reference), patch_size=3, groups=groups)
    for start in range(0, len(reference), 7):
        accumulator.add(reference[start : start + 7])
    result = patch_fid(patch_moments(generated, 3, groups), accumulator.moments(), bootstrap=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # window rows span 3 x (9 - 1) dims by construction
        expected = fid_from_features(windows_by_hand(generated, 3), windows_by_hand(reference, 3))
    # rel 1e-7, not float64 eps: the null directions' rounding-level eigenvalues enter through sqrt
    assert result.value == pytest.approx(expected, rel=1e-7)
    assert result.params["bootstrap"]["groups"] == [min(12, groups), min(20, groups)]
    assert result.params["compared_at"] == [9, 9]
    variance = result.params["window_variance"]
    assert variance["generated"] == pytest.approx(float(windows_by_hand(generated, 3).var(dim=0).sum()), rel=1e-9)
    assert variance["reference"] == pytest.approx(float(windows_by_hand(reference, 3).var(dim=0).sum()), rel=1e-9)


def test_blur_is_far_and_a_second_sample_is_near() -> None:
    """Two samples of sharp images: an interval reaching 0. The same scenes drawn at half size and
    upsampled bilinearly (what a hires fix starts from): far, with an interval clear of 0."""
    reference = patch_moments(squares(200, 16, seed=0))
    sharp = patch_fid(patch_moments(squares(100, 16, seed=1)), reference, bootstrap=100)
    small = F.interpolate(squares(100, 16, seed=1).float(), size=8, mode="area")
    blurred = F.interpolate(small, size=16, mode="bilinear", align_corners=False).round().to(torch.uint8)
    blur = patch_fid(patch_moments(blurred), reference, bootstrap=100)
    assert sharp.interval.low == 0.0
    assert blur.interval.low > 5 * sharp.value
    assert blur.value > sharp.interval.high
    softer = blur.params["window_variance"]
    assert softer["generated"] < 0.8 * softer["reference"]  # blur lowers local contrast


def test_centred_windows_do_not_warn_about_their_built_in_rank() -> None:
    """Each channel's window values sum to zero, so the covariance has rank 3 (k^2 - 1) < 3 k^2;
    that is expected, not a degenerate-feature warning. Noise fills that rank."""
    noise = torch.randint(0, 256, (40, 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        patch_fid(patch_moments(noise[:20]), patch_moments(noise[20:]), bootstrap=10)


def test_mismatches_are_errors() -> None:
    with pytest.raises(ValueError, match="one size"):
        patch_fid(patch_moments(squares(4, 16, 0)), patch_moments(squares(4, 12, 0)), bootstrap=10)
    accumulator = PatchAccumulator(3)
    accumulator.add(squares(2, 8, 0))
    with pytest.raises(ValueError, match="one image size"):
        accumulator.add(squares(1, 9, 0))
    with pytest.raises(ValueError, match="expected 3 images, got 2"):
        accumulator.moments()
    with pytest.raises(ValueError, match="4 images added"):
        accumulator.add(squares(2, 8, 0))


def test_reference_window_statistics_are_cached(tmp_path) -> None:
    cache = ReferenceCache(tmp_path)
    key = ReferenceKey({"name": "squares"}, "test", 8, "pixel-windows:4", "none", "centred", {}, 6)
    moments = patch_moments(squares(6, 8, 0))
    assert cache.load_or_compute_patches(key, lambda: moments) is moments

    def fail() -> None:
        raise AssertionError("a cached reference was recomputed")

    cached = cache.load_or_compute_patches(key, fail)
    assert (cached.size, cached.patch_size, cached.n_images) == ((8, 8), 4, 6)
    for name in ("counts", "sums", "outer"):
        assert torch.equal(getattr(cached, name), getattr(moments, name))
    wrong = ReferenceKey({"name": "squares"}, "test", 8, "pixel-windows:4", "none", "centred", {}, 7)
    with pytest.raises(ValueError, match="n=7"):
        cache.load_or_compute_patches(wrong, lambda: moments)


def test_a_reference_exists_at_the_data_size_and_up_to_the_originals_size() -> None:
    from mjexp.runs.eval_run.scoring import missing_patch_reference

    assert missing_patch_reference(16, 16, 16, native_size=8) is None  # the data as trained on
    assert missing_patch_reference(32, 32, 16, native_size=math.inf) is None
    assert missing_patch_reference(32, 32, 16, native_size=40) is None
    assert "exist up to 24 px without upscaling (data resolution 16)" in missing_patch_reference(32, 32, 16, 24)
    assert missing_patch_reference(32, 24, 16, math.inf) == "no reference at 32x24 px: the data is square"


def test_paired_difference_of_two_settings_on_the_same_items() -> None:
    """Sharp images against the same scenes blurred: the difference is the two patch FIDs'
    difference, far below 0 for its paired SE; a setting against itself differs by exactly 0."""
    reference = patch_moments(squares(200, 16, seed=0))
    sharp_images = squares(120, 16, seed=1)
    small = F.interpolate(sharp_images.float(), size=8, mode="area")
    blurred = patch_moments(F.interpolate(small, size=16, mode="bilinear", align_corners=False).round().to(torch.uint8))
    sharp = patch_moments(sharp_images)
    paired = patch_fid_difference(sharp, blurred, reference, bootstrap=100)
    assert paired.difference == pytest.approx(patch_fid_value(sharp, reference) - patch_fid_value(blurred, reference))
    assert paired.difference / paired.standard_error < -5
    assert paired.interval.high < 0
    same = patch_fid_difference(sharp, sharp, reference, bootstrap=20)
    assert same.difference == 0.0 and same.standard_error == 0.0
    with pytest.raises(ValueError, match="same items at one size"):
        patch_fid_difference(sharp, patch_moments(sharp_images[:100]), reference, bootstrap=10)
