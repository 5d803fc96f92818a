"""Fixtures for the scoring tests: a tiny random-init judge folder, a random-init Inception state
dict, and synthetic attribute-labelled images. Nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import open_clip
import pytest
import torch
from safetensors.torch import save_file
from torch_fidelity import feature_extractor_inceptionv3 as inception_module

from evaluation.prompt_sets import CaptionTemplate

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 48, "patch_size": 4, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
COLORS = {"red": (1.0, -1.0, -1.0), "green": (-1.0, 1.0, -1.0), "blue": (-1.0, -1.0, 1.0)}
POSITIONS = {"top left": (0, 0), "top right": (0, 8), "bottom left": (8, 0), "bottom right": (8, 8)}
TEMPLATE = CaptionTemplate("a {color} square in the {position}", {"color": tuple(COLORS), "position": tuple(POSITIONS)})


def write_open_clip_folder(folder: Path, seed: int = 0) -> Path:
    """A random-init tiny CLIP in open_clip's local-dir format (what the judge trainer writes)."""
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CLIP)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": TINY_CLIP, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


@pytest.fixture(scope="session")
def judge_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_open_clip_folder(tmp_path_factory.mktemp("judge") / "judge")


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torch-fidelity's Inception with random init, saved as a plain state dict."""
    torch.manual_seed(0)
    with mock.patch.object(inception_module, "load_state_dict_from_url", lambda *a, **k: {}), mock.patch.object(
        inception_module.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None
    ):
        network = inception_module.FeatureExtractorInceptionV3("inception-v3-compat", ["64"])
    state = network.state_dict()
    for name, value in state.items():
        if name.endswith("running_var"):  # default init shrinks activations; keep them O(1) per layer
            value.fill_(0.05)
    path = tmp_path_factory.mktemp("inception") / "inception-random.pth"
    torch.save(state, path)
    return path


def squares(n: int, seed: int, brightness: float = 1.0) -> tuple[torch.Tensor, list[dict[str, str]]]:
    """``n`` 16 px images in [-1, 1]: a jittered 6 px square of one colour in one quadrant."""
    g = torch.Generator().manual_seed(seed)
    images = torch.full((n, 3, 16, 16), -1.0)
    attrs = []
    for i in range(n):
        color = list(COLORS)[int(torch.randint(len(COLORS), (1,), generator=g))]
        position = list(POSITIONS)[int(torch.randint(len(POSITIONS), (1,), generator=g))]
        top, left = (v + int(torch.randint(0, 3, (1,), generator=g)) for v in POSITIONS[position])
        value = torch.tensor(COLORS[color]).view(3, 1, 1) * brightness
        images[i, :, top : top + 6, left : left + 6] = value
        attrs.append({"color": color, "position": position})
    images += 0.05 * torch.randn(images.shape, generator=g)
    return images.clamp(-1, 1), attrs


@pytest.fixture
def make_squares():
    """The ``squares`` generator (fixtures, since test modules here are not an importable package)."""
    return squares


@pytest.fixture
def template() -> CaptionTemplate:
    return TEMPLATE


@pytest.fixture(scope="session")
def tiny_clip_config() -> dict:
    return TINY_CLIP
