"""The judge: a domain CLIP trained on the data's ``judge`` split, stored as an open_clip
local-dir folder (``open_clip_config.json`` + ``open_clip_model.safetensors``).

It is registered as torch-fidelity feature extractor ``judge`` (features: its unit-norm image
embeddings), so ``torch_fidelity.calculate_metrics(feature_extractor="judge",
feature_extractor_weights_path=<folder>)`` works too. Its validity is measured on real held-out
images: zero-shot accuracy per attribute where the data has attribute labels, and caption retrieval
on every data set; below a threshold every judge metric is marked unreliable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from evaluation.clip_model import LOCAL_DIR, ClipModel, ClipSource, resolve_clip
from evaluation.retrieval import Retrieval

JUDGE = "judge"
VALIDITY_THRESHOLD = 0.95


def judge_source(folder: str | Path) -> ClipSource:
    return ClipSource(f"{LOCAL_DIR}{Path(folder).resolve()}")


def embedding_rank_bound(model_cfg: dict) -> int | None:
    """The most linearly independent directions an open_clip ViT's image embeddings can span.

    A ViT tower ends in LayerNorm then a linear projection: LayerNorm's output has zero mean over
    its ``width`` channels before the affine step, so it spans ``width - 1`` directions and the
    projection to ``embed_dim`` keeps at most that many. When ``embed_dim >= width`` (the judge:
    64 and 64) the covariance of the embeddings is singular by construction, not because the
    features degenerated. None for other towers (ResNet, timm), which end otherwise.
    """
    vision = model_cfg.get("vision_cfg", {})
    if not isinstance(vision.get("layers"), int) or "timm_model_name" in vision or "width" not in vision:
        return None
    return min(int(model_cfg["embed_dim"]), int(vision["width"]) - 1)


def load_judge(folder: str | Path, device: str | torch.device = "cpu") -> ClipModel:
    """The judge folder as a ClipModel (checked: safetensors weights, config present)."""
    return ClipModel(resolve_clip(judge_source(folder)), device)


class JudgeFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity adapter: uint8 (B, 3, H, W) -> unit-norm judge image embeddings."""

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError("the judge extractor needs feature_extractor_weights_path=<judge open_clip folder>")
        self.clip = load_judge(feature_extractor_weights_path)
        self.network = self.clip.model  # a submodule, so torch-fidelity's .cuda() moves it

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"judge expects uint8 (B, 3, H, W), got {x.dtype} {tuple(x.shape)}")
        features = self.clip.encode_images(x)  # the same code path as every other judge embedding
        return tuple(features for _ in self.features_list)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return (JUDGE,)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return JUDGE

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, 16, 16, dtype=torch.uint8)


def register_judge() -> None:
    """Register ``judge`` with torch-fidelity once per process."""
    if JUDGE not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(JUDGE, JudgeFeatureExtractor)


@dataclass(frozen=True)
class Validity:
    """The judge's checks on real images: zero-shot accuracy per attribute (data with attribute
    labels) and caption retrieval (every data set: :mod:`evaluation.retrieval`); ``reliable`` iff
    every attribute reaches ``threshold`` and retrieval reaches its own."""

    accuracy: dict[str, float]
    n_images: int
    threshold: float
    retrieval: Retrieval | None = None

    @property
    def reliable(self) -> bool:
        attributes_ok = all(value >= self.threshold for value in self.accuracy.values())
        return attributes_ok and (self.retrieval is None or self.retrieval.reliable)

    def describe(self, split: str) -> str:
        """One line for the console: every check with its threshold, and the verdict."""
        parts = []
        if self.accuracy:
            values = ", ".join(f"{name} {value:.3f}" for name, value in self.accuracy.items())
            parts.append(f"attribute accuracy {values} (threshold {self.threshold})")
        if self.retrieval is not None:
            r = self.retrieval
            parts.append(f"caption retrieval top-1 {r.top1:.3f} among {r.candidates} captions (chance {r.chance:.3f}, "
                         f"threshold {r.threshold})")
        verdict = "reliable" if self.reliable else "UNRELIABLE: every judge metric is flagged (†)"
        return f"Judge validity on {self.n_images} real {split} images: {'; '.join(parts) or 'nothing measured'}: {verdict}"

    def as_metrics(self) -> dict[str, float]:
        """The checks as tracking metrics (``judge_validity/...``; ``reliable`` is 1 or 0), so a
        comparison of runs can flag the ones scored by an unreliable judge."""
        metrics = {f"judge_validity/{name}": value for name, value in self.accuracy.items()}
        if self.retrieval is not None:
            metrics["judge_validity/retrieval_top1"] = self.retrieval.top1
        metrics["judge_validity/reliable"] = float(self.reliable)
        return metrics

    def as_dict(self) -> dict[str, object]:
        return {
            "accuracy": dict(self.accuracy),
            "n_images": self.n_images,
            "threshold": self.threshold,
            "retrieval": self.retrieval.as_dict() if self.retrieval is not None else None,
            "reliable": self.reliable,
        }
