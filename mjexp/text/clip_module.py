"""A small CLIP trained here on the data's image-caption pairs (the "domain CLIP").

Its frozen text tower conditions the diffusion model, and a second one, trained on the ``judge``
split with another seed, scores the generated images. The model is a plain open_clip ``CLIP``
built from :meth:`DomainClipConfig.model_cfg`, so it saves to open_clip's own ``local-dir`` format
and loads without this package.

Loss: open_clip's symmetric InfoNCE (Radford et al. 2021, Fig. 3) with *multi-positive* targets.
Procedural captions repeat a lot (about a hundred distinct ones), so a batch of 256 holds many
pairs whose captions are identical; the one-hot targets of the plain CLIP loss would push those
matching pairs apart. Each row's target instead spreads uniformly over every column with the same
caption (as in SupCon, Khosla et al. 2020, eq. 2 "out"); with distinct captions it is exactly
``open_clip.loss.ClipLoss``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import lightning as L
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from open_clip.model import CLIP
from open_clip.tokenizer import SimpleTokenizer

from mjexp.text.photometric import photometric_jitter
from mjexp.text.tokens import TokenCache

LOGIT_SCALE_MAX = math.log(100.0)  # open_clip's training clamp of the learned temperature


@dataclass(frozen=True)
class DomainClipConfig:
    """Architecture and training recipe; every field enters the cache key.

    Defaults, measured on the default 16 px shapes (2 shared CPU cores): ~50 s for 300 steps of
    batch 256; a judge trained on ``judge`` classifies colour, shape and position of ``test``
    images zero-shot with accuracy 1.0. ``patch_size=None`` cuts the image into a 4 x 4 grid of
    patches whatever its resolution.
    """

    embed_dim: int = 64
    width: int = 64  # both towers
    vision_layers: int = 2
    text_layers: int = 2
    heads: int = 2
    patch_size: int | None = None
    context_length: int = 24
    steps: int = 300
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    multi_positive: bool = True
    # Photometric jitter of the training images (mjexp.text.photometric): for a judge that must
    # read over-saturated, high-contrast samples of strong guidance as it reads real images.
    augment: bool = False
    # The square size the image tower reads; None: the data's resolution. Larger images are
    # resized to it (bicubic, antialiased, as open_clip-style preprocessing and the evaluation's
    # judge do): at 64 px the default 4 x 4 patches of 16 px did not train in 300 steps.
    image_size: int | None = None

    def __post_init__(self) -> None:
        positive = ("embed_dim", "width", "vision_layers", "text_layers", "heads", "steps", "batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"domain CLIP {name}={getattr(self, name)} must be >= 1")
        if self.width % self.heads:
            raise ValueError(f"domain CLIP width={self.width} must be divisible by heads={self.heads}")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"domain CLIP image_size={self.image_size} must be >= 1 (or null: the data's resolution)")
        if self.context_length < 2:
            raise ValueError(f"domain CLIP context_length={self.context_length} must be >= 2 (start and end tokens)")
        if not (self.lr > 0 and self.weight_decay >= 0 and self.warmup_steps >= 0):
            raise ValueError(
                f"domain CLIP needs lr > 0, weight_decay >= 0, warmup_steps >= 0; got "
                f"lr={self.lr}, weight_decay={self.weight_decay}, warmup_steps={self.warmup_steps}"
            )

    def model_cfg(self, image_size: int) -> dict:
        """open_clip ``model_cfg`` (what ``open_clip_config.json`` stores) for square images of
        ``image_size`` (the data's), or of the configured ``image_size`` when that is set."""
        image_size = self.image_size or image_size
        patch = self.patch_size or max(1, image_size // 4)
        if image_size % patch:
            raise ValueError(f"domain CLIP patch_size={patch} must divide the image size {image_size}")
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": {
                "image_size": image_size,
                "patch_size": patch,
                "width": self.width,
                "head_width": self.width // self.heads,
                "layers": self.vision_layers,
                "mlp_ratio": 2.0,
            },
            "text_cfg": {
                "context_length": self.context_length,
                "width": self.width,
                "heads": self.heads,
                "layers": self.text_layers,
                "mlp_ratio": 2.0,
            },
        }


class MultiPositiveClipLoss(ClipLoss):
    """open_clip's ``ClipLoss`` whose targets are uniform over all pairs sharing the row's caption."""

    def forward(  # type: ignore[override]
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        caption_ids: torch.Tensor,
    ) -> torch.Tensor:
        """``caption_ids`` (B, L): token ids (or any row labels); equal rows are the same caption."""
        logits_per_image, logits_per_text = self.get_logits(image_features, text_features, logit_scale)
        same = (caption_ids[:, None, :] == caption_ids[None, :, :]).all(dim=-1).to(logits_per_image.dtype)
        targets = same / same.sum(dim=1, keepdim=True)  # symmetric, so it serves both directions
        return (F.cross_entropy(logits_per_image, targets) + F.cross_entropy(logits_per_text, targets)) / 2


class TextEncoderModule(L.LightningModule):
    """Trains an open_clip ``CLIP`` on batches ``{"image": (B,3,H,W) in [-1,1], "text": list[str]}``."""

    def __init__(self, model_cfg: dict, config: DomainClipConfig) -> None:
        super().__init__()
        self.config = config
        self.clip = CLIP(**model_cfg)
        tokenizer = SimpleTokenizer(context_length=config.context_length)
        self._token_ids = TokenCache(tokenizer, config.context_length, 0, "domain CLIP")
        self.loss = MultiPositiveClipLoss()

    def fit(self, images: torch.Tensor) -> torch.Tensor:
        """Images at the image tower's size (resized only when they are not)."""
        size = self.clip.visual.image_size
        size = size if isinstance(size, tuple) else (size, size)
        if tuple(images.shape[-2:]) == tuple(size):
            return images
        return F.interpolate(images, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self._token_ids(texts).to(self.device)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        ids = self.tokenize(batch["text"])
        images = self.fit(batch["image"])
        images = photometric_jitter(images) if self.config.augment else images
        image_features, text_features, logit_scale = self.clip(images, ids)
        # one group per row makes every target one-hot: the plain CLIP loss
        groups = ids if self.config.multi_positive else torch.arange(len(ids), device=ids.device)[:, None]
        loss = self.loss(image_features, text_features, logit_scale, groups)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        with torch.no_grad():
            self.clip.logit_scale.clamp_(0.0, LOGIT_SCALE_MAX)

    def configure_optimizers(self):
        """AdamW without decay on gains, biases, embeddings and the temperature (open_clip's
        convention), linear warm-up then cosine decay to zero over ``steps``."""
        decay, no_decay = [], []
        for name, param in self.clip.named_parameters():
            exempt = param.ndim < 2 or "embedding" in name or "logit_scale" in name
            (no_decay if exempt else decay).append(param)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.config.lr,
        )
        warmup, total = self.config.warmup_steps, self.config.steps

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    @torch.no_grad()
    def retrieval_accuracy(self, batches: Iterable[dict]) -> float:
        """Image->text top-1 accuracy among the *distinct* captions (a duplicate is not a miss)."""
        features, texts = [], []
        for batch in batches:
            features.append(self.clip.encode_image(self.fit(batch["image"].to(self.device)), normalize=True))
            texts.extend(batch["text"])
        candidates = list(dict.fromkeys(texts))
        index = {caption: i for i, caption in enumerate(candidates)}
        text_features = self.clip.encode_text(self.tokenize(candidates), normalize=True)
        predicted = (torch.cat(features) @ text_features.T).argmax(dim=1).cpu()
        truth = torch.tensor([index[t] for t in texts])
        return (predicted == truth).float().mean().item()
