"""The judge: a domain CLIP trained on the data's ``judge`` split, stored as an open_clip
local-dir folder (``open_clip_config.json`` + ``open_clip_model.safetensors``).

It is registered as torch-fidelity feature extractor ``judge`` (features: its unit-norm image
embeddings), so ``torch_fidelity.calculate_metrics(feature_extractor="judge",
feature_extractor_weights_path=<folder>)`` works too. Its validity is its zero-shot accuracy per
attribute on real images with true attributes; below the threshold every judge metric is marked
unreliable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from evaluation.attributes import AttributeAccuracy
from evaluation.clip_model import LOCAL_DIR, ClipModel, ClipSource, resolve_clip

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
    """Zero-shot accuracy per attribute on real images; ``reliable`` iff every one >= threshold."""

    accuracy: dict[str, float]
    n_images: int
    threshold: float

    @property
    def reliable(self) -> bool:
        return all(value >= self.threshold for value in self.accuracy.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "accuracy": dict(self.accuracy),
            "n_images": self.n_images,
            "threshold": self.threshold,
            "reliable": self.reliable,
        }


def judge_validity(accuracy: AttributeAccuracy, threshold: float = VALIDITY_THRESHOLD) -> Validity:
    n_images = len(next(iter(accuracy.correct.values())))
    return Validity(accuracy.per_attribute(), n_images, threshold)
