"""Feature extractors for FID/KID: torch-fidelity's (``inception``, ``clip-*``, ``dinov2-*``)
and the ``judge``, all created through torch-fidelity's registry so the features are exactly
the ones torch-fidelity would compute.

``resolve_extractor`` finds and checks the weights without loading the network (preflight);
nothing is downloaded unless ``allow_network``. Offline without a file, the error names where to
put it. Files that torch-fidelity unpickles (Inception: ``torch.load(weights_only=False)``; CLIP:
``torch.jit.load``) are first checked with ``torch.load(weights_only=True)`` or their published
SHA-256.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_clip import MODEL_METADATA as CLIP_MODELS
from torch_fidelity.feature_extractor_clip import MODEL_URLS as CLIP_URLS
from torch_fidelity.feature_extractor_dinov2 import MODEL_METADATA as DINOV2_MODELS
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3
from torch_fidelity.utils import create_feature_extractor

from evaluation.clip_model import JUDGE_CONFIG, resolve_clip
from evaluation.judge import JUDGE, embedding_rank_bound, judge_source, register_judge
from evaluation.weights import (
    MissingWeightsError,
    check_known_hash,
    check_state_dict_file,
    hub_checkpoint,
)

INCEPTION = "inception"
INCEPTION_FILE = os.path.basename(URL_INCEPTION_V3)
# torch.hub convention: the hex block before the extension is the SHA-256 prefix of the file.
INCEPTION_SHA256_PREFIX = INCEPTION_FILE.rsplit("-", 1)[1].split(".")[0]
DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2/{arch}/{arch}_pretrain.pth"
DINOV2_REPO = "facebookresearch_dinov2_main"


@dataclass(frozen=True)
class Extractor:
    """A resolved feature extractor: which network, which layer, which weights (by hash)."""

    name: str  # what metric names carry: fid/<name>
    fidelity_name: str
    layer: str
    weights_path: str | None  # handed to torch-fidelity as feature_extractor_weights_path
    weights_sha256: str
    official_weights: bool
    preprocessing: str
    # The rank the features can reach by construction (None: their dimension); a covariance of
    # lower rank than this is what FID warns about.
    feature_rank: int | None = None

    @property
    def params(self) -> dict[str, object]:
        return {
            "extractor": self.fidelity_name,
            "layer": self.layer,
            "weights_sha256": self.weights_sha256,
            "official_weights": self.official_weights,
            "preprocessing": self.preprocessing,
            "torch_fidelity": torch_fidelity.__version__,
            **({"feature_rank_bound": self.feature_rank} if self.feature_rank is not None else {}),
        }


def _download(url: str, target: Path, sha256_prefix: str | None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(target), hash_prefix=sha256_prefix)


def _resolve_inception(layer: str, weights_path: str | None, allow_network: bool) -> Extractor:
    allowed = FeatureExtractorInceptionV3.get_provided_features_list()
    if layer not in allowed:
        raise ValueError(f"inception layer {layer!r} is not one of {allowed}")
    cached = hub_checkpoint(INCEPTION_FILE)
    if weights_path is None and not cached.is_file():
        if not allow_network:
            raise MissingWeightsError(
                f"fid/inception needs torch-fidelity's Inception-v3 weights, which are not on this machine. "
                f"Download {URL_INCEPTION_V3} and either put it at {cached} or pass its path as "
                "inception weights_path; metrics are never computed with a substitute network"
            )
        _download(URL_INCEPTION_V3, cached, INCEPTION_SHA256_PREFIX)
    path = Path(weights_path) if weights_path is not None else cached
    if not path.is_file():
        raise MissingWeightsError(f"inception weights_path {path} does not exist")
    digest = check_state_dict_file(path)
    return Extractor(
        INCEPTION if layer == "2048" else f"{INCEPTION}-{layer}",  # FID's standard layer keeps the plain name
        "inception-v3-compat",
        layer,
        str(path),
        digest,
        digest.startswith(INCEPTION_SHA256_PREFIX),
        "torch-fidelity inception-v3-compat: uint8 -> TF1-compatible bilinear resize to 299x299 -> (x - 128) / 128",
    )


def _resolve_clip(name: str, weights_path: str | None, allow_network: bool) -> Extractor:
    expected = CLIP_MODELS[name]["hash"]
    cached = hub_checkpoint(f"{name}-{expected}.pt")
    if weights_path is None and not cached.is_file():
        if not allow_network:
            raise MissingWeightsError(
                f"fid/{name} needs the OpenAI CLIP file {CLIP_URLS[name]}, which is not on this machine; "
                f"download it to {cached} or pass its path as weights_path"
            )
        _download(CLIP_URLS[name], cached, expected)
    path = Path(weights_path) if weights_path is not None else cached
    digest = check_known_hash(path, expected)  # a TorchScript archive: only a known hash makes it safe
    return Extractor(
        name,
        name,
        "clip",
        str(path),
        digest,
        True,
        f"torch-fidelity {name}: uint8 -> TF1-compatible bilinear resize to the model resolution -> CLIP mean/std",
    )


def _resolve_dinov2(name: str, weights_path: str | None, allow_network: bool) -> Extractor:
    if weights_path is not None:
        raise ValueError(f"torch-fidelity loads {name} only from the torch hub cache; weights_path is not supported")
    arch = DINOV2_MODELS[name]
    checkpoint = hub_checkpoint(f"{arch}_pretrain.pth")
    repo = Path(torch.hub.get_dir()) / DINOV2_REPO
    if not (checkpoint.is_file() and repo.is_dir()):
        if not allow_network:
            raise MissingWeightsError(
                f"fid/{name} needs the torch hub repo facebookresearch/dinov2 at {repo} and "
                f"{DINOV2_URL.format(arch=arch)} at {checkpoint}; neither download is allowed offline"
            )
        if not checkpoint.is_file():
            _download(DINOV2_URL.format(arch=arch), checkpoint, None)
    return Extractor(
        name,
        name,
        "dinov2",
        None,
        check_state_dict_file(checkpoint),
        True,
        f"torch-fidelity {name}: uint8 -> TF1-compatible bilinear resize to 224x224 -> ImageNet mean/std",
    )


def _resolve_judge(judge_dir: str | None) -> Extractor:
    if judge_dir is None:
        raise MissingWeightsError("fid/judge needs judge_dir=<the judge's open_clip folder>")
    resolved = resolve_clip(judge_source(judge_dir))
    return Extractor(
        JUDGE,
        JUDGE,
        JUDGE,
        str(Path(judge_dir).resolve()),
        resolved.sha256,
        False,
        "judge: unit-norm open_clip image embeddings; uint8/255, antialiased resize + centre crop to the "
        "model's image size (skipped when equal), normalised with the folder's preprocess_cfg",
        embedding_rank_bound(json.loads((Path(judge_dir) / JUDGE_CONFIG).read_text())["model_cfg"]),
    )


def resolve_extractor(
    name: str,
    *,
    layer: str | None = None,
    weights_path: str | None = None,
    judge_dir: str | None = None,
    allow_network: bool = False,
) -> Extractor:
    """Check the weights of extractor ``name`` (inception, judge, clip-*, dinov2-*)."""
    if name == INCEPTION:
        return _resolve_inception(layer or "2048", weights_path, allow_network)
    if name == JUDGE:
        return _resolve_judge(judge_dir)
    if name in CLIP_MODELS:
        return _resolve_clip(name, weights_path, allow_network)
    if name in DINOV2_MODELS:
        return _resolve_dinov2(name, weights_path, allow_network)
    known = [INCEPTION, JUDGE, *CLIP_MODELS, *DINOV2_MODELS]
    raise ValueError(f"unknown feature extractor {name!r}; known: {known}")


def load_extractor(extractor: Extractor, device: str | torch.device = "cpu") -> FeatureExtractorBase:
    """Build the torch-fidelity feature extractor for a resolved ``extractor``."""
    register_judge()
    return create_feature_extractor(
        extractor.fidelity_name,
        [extractor.layer],
        cuda=torch.device(device).type == "cuda",
        feature_extractor_weights_path=extractor.weights_path,
        verbose=False,
    )


@torch.no_grad()
def extract_features(network: FeatureExtractorBase, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 (B, d) features on the CPU."""
    if images.dtype != torch.uint8:
        raise ValueError(f"extract_features expects uint8 images (see images.to_uint8), got {images.dtype}")
    device = next(network.parameters()).device
    chunks = [network(chunk.to(device))[0].float().cpu() for chunk in images.split(batch_size)]
    return torch.cat(chunks)
