"""The open_clip wrapper: tensor preprocessing equals open_clip's own transform; folder checks."""

from __future__ import annotations

from pathlib import Path

import open_clip
import pytest
import torch
from PIL import Image

from evaluation.clip_model import ClipSource, resolve_clip
from evaluation.judge import load_judge
from evaluation.weights import MissingWeightsError


def test_preprocessing_matches_open_clip_transform_at_native_size(judge_dir: Path) -> None:
    judge = load_judge(judge_dir)
    _, _, transform = open_clip.create_model_and_transforms(f"local-dir:{judge_dir}")
    pixels = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    theirs = torch.stack([transform(Image.fromarray(p.permute(1, 2, 0).numpy())) for p in pixels])
    torch.testing.assert_close(judge.preprocess(pixels), theirs, rtol=0, atol=1e-6)
    assert "mean=[0.5, 0.5, 0.5]" in judge.preprocessing


def test_resize_reaches_the_model_size_and_embeddings_are_unit_norm(judge_dir: Path) -> None:
    judge = load_judge(judge_dir)
    pixels = torch.randint(0, 256, (3, 3, 8, 12), dtype=torch.uint8)
    assert judge.preprocess(pixels).shape == (3, 3, 16, 16)
    embeddings = judge.encode_images(pixels)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(3))
    texts = judge.encode_texts(["a red square", "a red square", "a blue square"])
    assert torch.equal(texts[0], texts[1]) and texts.shape == (3, 32)


def test_truncation_is_counted(judge_dir: Path) -> None:
    judge = load_judge(judge_dir)  # context length 16
    assert judge.truncated(["a red square", " ".join(["red"] * 40)]) == 1


def test_folder_without_safetensors_is_refused(tmp_path: Path) -> None:
    (tmp_path / "open_clip_config.json").write_text("{}")
    (tmp_path / "open_clip_pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(MissingWeightsError, match="open_clip_model.safetensors"):
        resolve_clip(ClipSource(f"local-dir:{tmp_path}"))
