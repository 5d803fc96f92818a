"""Reference features and statistics cached on disk under a content hash.

The key covers everything that changes the numbers: the dataset's fingerprint (its config,
including the renderer version), split, resolution, extractor with its weights' hash and
preprocessing, the quantisation policy, the sample count and this code's version. torch-fidelity
names its cache by input name only, so a changed renderer would silently reuse stale statistics;
here any change is a different file. Files are safetensors (no pickle) written atomically. Each
file also holds the reference images' roughness (:mod:`evaluation.roughness`), which needs only
the pixels but is stored beside every extractor's features so that no cache hit re-reads images.
The reference images' window statistics for patch FID (:mod:`evaluation.patch_fid`) are cached
the same way, in files of their own (a hires setting needs them at another size).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import torch
import torch_fidelity
from safetensors import safe_open
from safetensors.torch import save_file

from evaluation.fid import GaussianStats
from evaluation.patch_fid import PatchMoments

# Bump when feature extraction, quantisation or the stored statistics change meaning.
CODE_VERSION = "evaluation-refstats-3"  # 2: per-image roughness stored; 3: captions stored


def canonical_json(value: object) -> str:
    """Deterministic JSON (sorted keys, no whitespace); raises on values JSON cannot represent."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class ReferenceKey:
    dataset: Mapping[str, object]
    split: str
    resolution: int
    extractor: str
    weights_sha256: str
    preprocessing: str
    quantisation: Mapping[str, object]
    n: int
    code_version: str = field(default=f"{CODE_VERSION}/torch-fidelity-{torch_fidelity.__version__}")

    def digest(self) -> str:
        return hashlib.sha256(canonical_json(asdict(self)).encode()).hexdigest()


@dataclass(frozen=True)
class ReferenceFeatures:
    """Features (n, d) of the reference images, their float64 Gaussian stats, their attributes,
    their roughness (n,) and their captions (the judge's retrieval check)."""

    features: torch.Tensor
    stats: GaussianStats
    attrs: dict[str, list] | None
    roughness: torch.Tensor
    path: Path
    texts: list[str] | None = None


Compute = Callable[[], tuple[torch.Tensor, dict[str, list] | None, torch.Tensor, list[str] | None]]


class ReferenceCache:
    """``load_or_compute(key, compute)``: read ``<root>/<digest>.safetensors`` or compute and write it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: ReferenceKey) -> Path:
        return self.root / f"{key.digest()}.safetensors"

    def load_or_compute(self, key: ReferenceKey, compute: Compute) -> ReferenceFeatures:
        path = self.path(key)
        if path.is_file():
            return self._read(path)
        features, attrs, roughness, texts = compute()
        if len(features) != key.n or len(roughness) != key.n:
            raise ValueError(
                f"reference produced {len(features)} feature rows and {len(roughness)} roughness values, "
                f"the key says n={key.n}"
            )
        stats = GaussianStats.from_features(features)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tensors = {"features": features.float().contiguous(), "mu": stats.mu.cpu(), "sigma": stats.sigma.cpu().contiguous(),
                   "roughness": roughness.double().cpu().contiguous()}
        metadata = {"key": canonical_json(asdict(key)), "attrs": json.dumps(attrs), "texts": json.dumps(texts)}
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
        return ReferenceFeatures(tensors["features"], stats, attrs, tensors["roughness"], path, texts)

    @staticmethod
    def _read(path: Path) -> ReferenceFeatures:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata()
            features, mu, sigma, roughness = (handle.get_tensor(n) for n in ("features", "mu", "sigma", "roughness"))
        stats = GaussianStats(mu, sigma, len(features))
        return ReferenceFeatures(features, stats, json.loads(metadata["attrs"]), roughness, path, json.loads(metadata["texts"]))

    def load_or_compute_patches(self, key: ReferenceKey, compute: Callable[[], PatchMoments]) -> PatchMoments:
        """Window statistics of the reference images: read ``<root>/<digest>.safetensors`` or
        compute and write it."""
        path = self.path(key)
        if path.is_file():
            with safe_open(str(path), framework="pt") as handle:
                meta = json.loads(handle.metadata()["patches"])
                counts, sums, outer = (handle.get_tensor(n) for n in ("counts", "sums", "outer"))
            return PatchMoments(tuple(meta["size"]), meta["patch_size"], meta["n_images"], counts, sums, outer)
        moments = compute()
        if moments.n_images != key.n:
            raise ValueError(f"reference produced window statistics of {moments.n_images} images, the key says n={key.n}")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        meta = {"size": list(moments.size), "patch_size": moments.patch_size, "n_images": moments.n_images}
        tensors = {"counts": moments.counts, "sums": moments.sums, "outer": moments.outer}
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={"key": canonical_json(asdict(key)), "patches": json.dumps(meta)})
        os.replace(tmp, path)
        return moments
