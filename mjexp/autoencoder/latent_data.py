"""The diffusion model's training data in latent space: each split's images replaced by the
autoencoder's scaled latents (from mjexp.autoencoder.latent_cache), captions and attributes kept.

``sample_posterior=False`` (the default) trains on the posterior mean; ``True`` draws a fresh
sample of the posterior each time an item is read (from the global RNG, which training seeds and
checkpoints).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from mjexp.autoencoder.codec import LatentCodec, Posterior
from mjexp.autoencoder.latent_cache import cached_posteriors
from mjexp.data.datamodule import CaptionedDataset, CaptionedImageDataModule, Sample

TRAINING_SPLITS = ("train", "val")
LATENTS_DIR = "latents"  # inside autoencoder.cache_dir


class LatentDataset(CaptionedDataset):
    """A split of ``base`` whose ``"image"`` is the scaled latent of its image."""

    def __init__(self, base: CaptionedDataset, posterior: Posterior, codec: LatentCodec, sample: bool) -> None:
        if len(posterior.mean) != len(base):
            raise ValueError(f"{len(posterior.mean)} latents for a split of {len(base)} images")
        self.base, self.posterior, self.codec, self.sample = base, posterior, codec, sample

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> Sample:
        item = dict(self.base[index])
        posterior = Posterior(self.posterior.mean[index], self.posterior.logvar[index])
        item["image"] = self.codec.scale(posterior.sample() if self.sample else posterior.mean)
        return item

    def fingerprint(self) -> dict[str, Any]:
        return self.base.fingerprint()


class LatentDataModule(L.LightningDataModule):
    """``base``'s training loaders (same batch size, order and resumable shuffle) over latents;
    :meth:`encode` fills (or reads) the cache before training, so its cost is a stage of its own."""

    def __init__(self, base: CaptionedImageDataModule, codec: LatentCodec, cache_dir: str | Path, sample_posterior: bool):
        super().__init__()
        self.base, self.codec, self.cache_dir, self.sample_posterior = base, codec, Path(cache_dir), sample_posterior
        self._datasets: dict[str, LatentDataset] = {}

    def encode(self) -> None:
        for split in TRAINING_SPLITS:
            self.latent_dataset(split)

    def latent_dataset(self, split: str) -> LatentDataset:
        if split not in self._datasets:
            base = self.base.dataset(split)
            posterior = cached_posteriors(self.codec, base, self.base.fingerprint(split), self.cache_dir)
            self._datasets[split] = LatentDataset(base, posterior, self.codec, self.sample_posterior)
        return self._datasets[split]

    def train_dataloader(self) -> DataLoader:
        return self.base.dataloader("train", shuffle=True, drop_last=True, dataset=self.latent_dataset("train"))

    def val_dataloader(self) -> DataLoader:
        return self.base.dataloader("val", dataset=self.latent_dataset("val"))
