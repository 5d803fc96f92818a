"""Any open_clip model as a frozen scorer: the judge (an open_clip ``local-dir`` folder) or a
public model (name + pretrained tag or local weight file).

Resolution (finding the weight file, hashing it, failing offline with one clear message) is
separate from loading, so preflight can check every model before anything is generated.
Images enter as uint8 (B, 3, H, W) and are preprocessed as tensors with the model's own
``preprocess_cfg`` (size, mean, std, interpolation); the policy is recorded in ``params``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import huggingface_hub
import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

from evaluation.weights import MissingWeightsError, sha256_file

LOCAL_DIR = "local-dir:"
JUDGE_CONFIG = "open_clip_config.json"
JUDGE_WEIGHTS = "open_clip_model.safetensors"


@dataclass(frozen=True)
class ClipSource:
    """``model``: an open_clip model name or ``local-dir:/path``; ``pretrained``: a tag or a file."""

    model: str
    pretrained: str | None = None

    @property
    def label(self) -> str:
        """``clip_score/<label>``: model and tag (or weight-file stem); a local-dir folder's name."""
        if self.model.startswith(LOCAL_DIR):
            return Path(self.model[len(LOCAL_DIR) :]).name
        tag = Path(self.pretrained).stem if self.pretrained and os.path.isfile(self.pretrained) else self.pretrained
        return f"{self.model}/{tag}" if tag else self.model


@dataclass(frozen=True)
class ResolvedClip:
    """What ``open_clip.create_model`` is called with, plus the weights' content hash."""

    source: ClipSource
    model_name: str
    pretrained: str | None
    sha256: str
    force_quick_gelu: bool = False
    force_preprocess_cfg: dict = field(default_factory=dict)


def local_dir_sha256(folder: Path) -> str:
    """One hash over the config and weights of an open_clip local-dir folder."""
    digest = hashlib.sha256()
    for name in (JUDGE_CONFIG, JUDGE_WEIGHTS):
        digest.update(sha256_file(folder / name).encode())
    return digest.hexdigest()


def _resolve_local_dir(source: ClipSource) -> ResolvedClip:
    folder = Path(source.model[len(LOCAL_DIR) :])
    missing = [name for name in (JUDGE_CONFIG, JUDGE_WEIGHTS) if not (folder / name).is_file()]
    if missing:
        raise MissingWeightsError(
            f"open_clip folder {folder} lacks {', '.join(missing)}; it must hold {JUDGE_CONFIG} (with "
            f"'model_cfg') and {JUDGE_WEIGHTS} (safetensors weights, so nothing is unpickled)"
        )
    return ResolvedClip(source, source.model, None, local_dir_sha256(folder))


def _cached_tag_file(cfg: dict) -> str | None:
    """The file open_clip would load for a pretrained tag, if it is already on this machine."""
    hub = cfg.get("hf_hub", "")
    if hub:
        repo, filename = os.path.split(hub)
        for name in (HF_SAFE_WEIGHTS_NAME, filename or HF_WEIGHTS_NAME):
            found = huggingface_hub.try_to_load_from_cache(repo, name)
            if isinstance(found, str):
                return found
    url = cfg.get("url", "")
    if url:
        path = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if path.is_file():
            return str(path)
    return None


def resolve_clip(source: ClipSource, allow_network: bool = False) -> ResolvedClip:
    """Find and hash the weights of ``source`` without downloading unless ``allow_network``."""
    if source.model.startswith(LOCAL_DIR):
        return _resolve_local_dir(source)
    if source.model.replace("/", "-") not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {source.model!r}; known: {open_clip.list_models()}")
    if source.pretrained is None:
        raise ValueError(f"open_clip model {source.model!r} needs pretrained=<tag or weight file>")
    if os.path.isfile(source.pretrained):  # open_clip reads it with safetensors or torch.load(weights_only=True)
        return ResolvedClip(source, source.model, source.pretrained, sha256_file(source.pretrained))
    cfg = open_clip.get_pretrained_cfg(source.model, source.pretrained)
    if not cfg:
        raise ValueError(
            f"pretrained={source.pretrained!r} is neither a file nor a tag of {source.model}; tags: "
            f"{open_clip.list_pretrained_tags_by_model(source.model)}"
        )
    preprocess = {key: cfg[key] for key in ("mean", "std", "interpolation", "resize_mode") if key in cfg}
    cached = _cached_tag_file(cfg)
    if cached is None and not allow_network:
        where = cfg.get("hf_hub") or cfg.get("url")
        raise MissingWeightsError(
            f"open_clip {source.model} pretrained={source.pretrained!r} is not cached on this machine and "
            f"network access is off. Download its weights ({where}) and pass pretrained=<path to the file>, "
            "or allow network access"
        )
    # The resolved file is loaded by path, so open_clip never contacts the hub again.
    path = cached if cached is not None else open_clip.pretrained.download_pretrained(cfg)
    return ResolvedClip(source, source.model, path, sha256_file(path), bool(cfg.get("quick_gelu")), preprocess)


class ClipModel:
    """A frozen open_clip model with tensor preprocessing and L2-normalised embeddings."""

    def __init__(self, resolved: ResolvedClip, device: str | torch.device = "cpu") -> None:
        self.resolved = resolved
        self.model = open_clip.create_model(
            resolved.model_name,
            pretrained=resolved.pretrained,
            device=device,
            force_quick_gelu=resolved.force_quick_gelu,
            force_preprocess_cfg=resolved.force_preprocess_cfg or None,
        ).eval()
        self.model.requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(resolved.model_name)
        cfg = self.model.visual.preprocess_cfg
        size = cfg["size"]
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        self.mean = torch.tensor(cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg["std"], dtype=torch.float32).view(1, 3, 1, 1)
        self.interpolation = cfg["interpolation"]
        self.context_length = int(getattr(self.tokenizer, "context_length", 0))
        self._text_cache: dict[str, torch.Tensor] = {}

    @property
    def device(self) -> torch.device:
        """Where the model lives (torch-fidelity may move it after construction)."""
        return next(self.model.parameters()).device

    @property
    def params(self) -> dict[str, object]:
        """The definition of anything scored with this model."""
        return {
            "model": self.resolved.model_name,
            "pretrained": self.resolved.source.pretrained,
            "weights_sha256": self.resolved.sha256,
            "preprocessing": self.preprocessing,
            "context_length": self.context_length,
        }

    @property
    def preprocessing(self) -> str:
        mean = [round(float(v), 5) for v in self.mean.flatten()]
        std = [round(float(v), 5) for v in self.std.flatten()]
        return (
            f"uint8/255; {self.interpolation} antialiased torch resize of the short side to "
            f"{self.image_size[0]} + centre crop {self.image_size} (skipped when already that size); "
            f"normalise mean={mean} std={std}"
        )

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> normalised float input of the image tower."""
        x = images.to(self.device, torch.float32) / 255.0
        height, width = x.shape[-2:]
        target_h, target_w = self.image_size
        if (height, width) != (target_h, target_w):
            scale = max(target_h / height, target_w / width)
            size = (max(target_h, round(height * scale)), max(target_w, round(width * scale)))
            x = F.interpolate(x, size=size, mode=self.interpolation, antialias=True, align_corners=False)
            top, left = (size[0] - target_h) // 2, (size[1] - target_w) // 2
            x = x[..., top : top + target_h, left : left + target_w].clamp(0.0, 1.0)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> (B, D) unit-norm float32 embeddings on the CPU."""
        out = [
            self.model.encode_image(self.preprocess(chunk), normalize=True).float().cpu()
            for chunk in images.split(batch_size)
        ]
        return torch.cat(out)

    def truncated(self, texts: Sequence[str]) -> int:
        """How many prompts fill the whole context (open_clip truncates those silently)."""
        tokens = self.tokenizer(list(texts))
        return int((tokens[:, -1] != 0).sum())

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Prompts -> (T, D) unit-norm float32 embeddings; repeated prompts are encoded once."""
        if not texts:
            raise ValueError("encode_texts needs at least one prompt")
        new = list(dict.fromkeys(t for t in texts if t not in self._text_cache))
        for start in range(0, len(new), batch_size):
            chunk = new[start : start + batch_size]
            tokens = self.tokenizer(chunk).to(self.device)
            embeddings = self.model.encode_text(tokens, normalize=True).float().cpu()
            self._text_cache.update(zip(chunk, embeddings))
        return torch.stack([self._text_cache[t] for t in texts])

