"""Reference-statistics cache: hit, miss on any changed key field, safe storage."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.refstats import ReferenceCache, ReferenceKey

KEY = ReferenceKey(
    dataset={"name": "shapes", "renderer_version": "3", "jitter": 0.1, "seed": 0},
    split="test",
    resolution=16,
    extractor="judge:judge",
    weights_sha256="ab" * 32,
    preprocessing="uint8/255",
    quantisation={"rounding": "half-even"},
    n=50,
)


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> tuple[torch.Tensor, dict, torch.Tensor, list[str]]:
        self.calls += 1
        g = torch.Generator().manual_seed(self.calls)
        return (torch.randn(50, 4, generator=g), {"color": ["red"] * 50}, torch.rand(50, generator=g, dtype=torch.float64),
                [f"caption {i}" for i in range(50)])


def test_hit_after_miss_and_stored_statistics(tmp_path: Path) -> None:
    cache, compute = ReferenceCache(tmp_path), Counter()
    first = cache.load_or_compute(KEY, compute)
    second = cache.load_or_compute(KEY, compute)
    assert compute.calls == 1
    assert torch.equal(first.features, second.features) and second.attrs == {"color": ["red"] * 50}
    assert second.texts == first.texts == [f"caption {i}" for i in range(50)]
    assert torch.equal(first.roughness, second.roughness) and second.roughness.dtype == torch.float64
    assert second.stats.mu.dtype == torch.float64 and second.stats.sigma.dtype == torch.float64
    np.testing.assert_allclose(second.stats.sigma.numpy(), np.cov(first.features.double().numpy(), rowvar=False), rtol=1e-12)
    assert second.path.suffix == ".safetensors" and list(tmp_path.iterdir()) == [second.path]


@pytest.mark.parametrize(
    "change",
    [
        {"dataset": {**KEY.dataset, "renderer_version": "4"}},
        {"dataset": {**KEY.dataset, "jitter": 0.2}},
        {"split": "val"},
        {"resolution": 24},
        {"extractor": "inception-v3-compat:2048"},
        {"weights_sha256": "cd" * 32},
        {"preprocessing": "uint8/255 bilinear"},
        {"n": 51},
        {"code_version": "other"},
    ],
)
def test_changing_one_field_recomputes(tmp_path: Path, change: dict) -> None:
    cache, compute = ReferenceCache(tmp_path), Counter()
    cache.load_or_compute(KEY, compute)
    changed = dataclasses.replace(KEY, **change)
    if "n" in change:
        with pytest.raises(ValueError, match="n=51"):
            cache.load_or_compute(changed, compute)
    else:
        cache.load_or_compute(changed, compute)
    assert compute.calls == 2


def test_key_digest_is_order_independent() -> None:
    reordered = dataclasses.replace(KEY, dataset=dict(reversed(list(KEY.dataset.items()))))
    assert reordered.digest() == KEY.digest()


def test_roughness_must_cover_every_reference_image(tmp_path: Path) -> None:
    features, attrs, roughness, texts = Counter()()
    with pytest.raises(ValueError, match="49 roughness values, the key says n=50"):
        ReferenceCache(tmp_path).load_or_compute(KEY, lambda: (features, attrs, roughness[:49], texts))
    assert list(tmp_path.iterdir()) == []  # nothing half-written
