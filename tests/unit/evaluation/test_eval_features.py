"""Extractors: the torch-fidelity Inception path through a local weights file, cross-checked against
torch-fidelity's own FID/KID; the judge registered with torch-fidelity; offline and unsafe-file errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torch_fidelity
from torch.utils.data import Dataset

from evaluation.features import extract_features, load_extractor, resolve_extractor
from evaluation.fid import fid_from_features
from evaluation.quantisation import to_uint8
from evaluation.kid import kid
from evaluation.weights import MissingWeightsError, UnsafeWeightsError


class Images(Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def fidelity(first: torch.Tensor, second: torch.Tensor, **kwargs) -> dict[str, float]:
    return torch_fidelity.calculate_metrics(
        input1=Images(first), input2=Images(second), cuda=False, fid=True, kid=True,
        save_cpu_ram=True, verbose=False, **{"cache": False, **kwargs},
    )


def two_sets(squares, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    first, _ = squares(n, seed=1)
    second, _ = squares(n, seed=2, brightness=0.6)
    return to_uint8(first)[0], to_uint8(second)[0]


def test_inception_from_local_random_weights_matches_torch_fidelity(
    inception_weights: Path, make_squares, tmp_path: Path
) -> None:
    n, subsets = 66, 5  # layer '64' has d = 64: n >= d + 1
    first, second = two_sets(make_squares, n)
    theirs = fidelity(
        first, second, feature_extractor="inception-v3-compat", feature_layer_fid="64", feature_layer_kid="64",
        feature_extractor_weights_path=str(inception_weights), kid_subsets=subsets, kid_subset_size=n, rng_seed=3,
        cache=True, cache_root=str(tmp_path), input1_cache_name="first", input2_cache_name="second",
    )
    # torch-fidelity's own features (from its cache) - Inception at 299 px is slow on CPU, so our
    # extractor runs on a few images only and must reproduce those rows exactly.
    features = [
        torch.load(tmp_path / f"{name}-inception-v3-compat-features-64.pt", weights_only=True) for name in ("first", "second")
    ]
    extractor = resolve_extractor("inception", layer="64", weights_path=str(inception_weights))
    assert extractor.weights_path == str(inception_weights) and not extractor.official_weights
    assert extractor.name == "inception-64"  # a non-standard layer is named, never passed off as fid/inception
    ours = extract_features(load_extractor(extractor), first[:6])
    assert ours.shape == (6, 64) and torch.equal(ours, features[0][:6])
    # torch-fidelity keeps the mean in float32 (relative error ~1e-7 of the |mu|^2 terms) and uses
    # eigvals of S1 S2 instead of our symmetric form: rel 1e-4 covers both.
    fid = fid_from_features(*features)
    assert fid > 0 and fid == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
    # torch-fidelity evaluates the kernel in float32 (a 64-term dot product, cubed: ~1e-6 relative
    # error per entry); rel 1e-4 covers that, while a different definition (biased estimator: O(1/n)
    # = 1.5% here; other subsets or gamma) would be far outside it.
    ours_kid = kid(*features, subsets=subsets, subset_size=n, seed=3)
    assert ours_kid.mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4)


def test_judge_is_a_torch_fidelity_extractor(judge_dir: Path, make_squares) -> None:
    n = 40  # judge embeddings have d = 32
    first, second = two_sets(make_squares, n)
    extractor = resolve_extractor("judge", judge_dir=str(judge_dir))
    ours_1, ours_2 = (extract_features(load_extractor(extractor), x) for x in (first, second))
    assert torch.allclose(ours_1.norm(dim=1), torch.ones(n), atol=1e-5)  # unit-norm embeddings
    theirs = fidelity(first, second, feature_extractor="judge", feature_extractor_weights_path=str(judge_dir), kid_subset_size=n)
    assert fid_from_features(ours_1, ours_2) == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)


def test_inception_offline_without_weights_says_where_to_put_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(MissingWeightsError) as error:
        resolve_extractor("inception")
    message = str(error.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "weights_path" in message and "https://github.com/toshas/torch-fidelity" in message
    assert not (tmp_path / "hub").exists()  # nothing was downloaded


@pytest.mark.parametrize("name", ["clip-vit-b-32", "dinov2-vit-s-14"])
def test_other_torch_fidelity_extractors_offline(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(MissingWeightsError, match=name):
        resolve_extractor(name)


class Payload:
    """An arbitrary object: a pickle of it needs code execution to load."""


def test_pickled_objects_are_refused_before_torch_fidelity_sees_them(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"weight": Payload()}, handle, protocol=2)
    with pytest.raises(UnsafeWeightsError, match="weights_only=True"):
        resolve_extractor("inception", weights_path=str(path))


def test_clip_file_with_wrong_hash_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ViT-B-32.pt"
    path.write_bytes(b"not the published file")
    with pytest.raises(UnsafeWeightsError, match="expected 40d36571"):
        resolve_extractor("clip-vit-b-32", weights_path=str(path))


def test_unknown_extractor_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: .*inception.*judge"):
        resolve_extractor("vgg")
