"""The rank bound of open_clip ViT embeddings, checked on open_clip itself, and its use by FID."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from evaluation.features import resolve_extractor
from evaluation.judge import embedding_rank_bound


def vit_config(embed_dim: int, width: int) -> dict:
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {"image_size": 16, "layers": 1, "width": width, "patch_size": 4, "head_width": 8},
        "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
    }


@pytest.mark.parametrize(("embed_dim", "width"), [(24, 24), (32, 24), (16, 24)])
def test_bound_is_the_rank_open_clip_vit_embeddings_reach(embed_dim: int, width: int) -> None:
    torch.manual_seed(0)
    config = vit_config(embed_dim, width)
    model = open_clip.CLIP(**config).eval()
    with torch.no_grad():  # a trained LayerNorm: gamma and beta away from their (1, 0) init
        model.visual.ln_post.weight.uniform_(0.5, 1.5)
        model.visual.ln_post.bias.normal_(0.0, 0.5)
        features = model.encode_image(torch.randn(400, 3, 16, 16)).double().numpy()
    values = np.linalg.eigvalsh(np.cov(features, rowvar=False))
    rank = int((values > values.max() * 1e-10).sum())
    assert rank == embedding_rank_bound(config) == min(embed_dim, width - 1)


def test_towers_without_a_final_layernorm_have_no_bound() -> None:
    resnet = {"embed_dim": 64, "vision_cfg": {"layers": [1, 1, 1, 1], "width": 64, "image_size": 64}}
    timm = {"embed_dim": 64, "vision_cfg": {"timm_model_name": "vit_tiny_patch16_224", "layers": 12, "width": 192}}
    assert embedding_rank_bound(resnet) is None and embedding_rank_bound(timm) is None


def test_judge_extractor_carries_the_bound(judge_dir: Path, inception_weights: Path) -> None:
    extractor = resolve_extractor("judge", judge_dir=str(judge_dir))
    assert extractor.feature_rank == 32  # the fixture: embed_dim 32 < width 48, so full rank
    assert extractor.params["feature_rank_bound"] == 32
    assert "feature_rank_bound" not in resolve_extractor("inception", weights_path=str(inception_weights)).params
