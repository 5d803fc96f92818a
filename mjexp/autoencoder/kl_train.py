"""Train an autoencoder once per content hash and keep it in diffusers' ``save_pretrained`` format.

The folder (``<cache_dir>/<split>-seed<seed>-<digest>``) holds ``config.json`` (with the estimated
``scaling_factor``), ``diffusion_pytorch_model.safetensors`` and ``autoencoder.json`` (validation
PSNR, the scaling factor, training time, the hashed inputs), so
``AutoencoderKL.from_pretrained(folder)`` loads it without mjexp and ``autoencoder=pretrained
autoencoder.path=<folder>`` gives the same latents. The key hashes the recipe, the seed, the data's
fingerprint, the resolution and the training code: a second run with the same inputs reuses the
folder. A killed training leaves ``<folder>.partial/last.ckpt`` (every
``checkpoint_every_n_steps`` updates), from which the next call continues.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import diffusers
import lightning as L
import torch
from torch.utils.data import DataLoader

from mjexp.autoencoder import adversarial, autoencoder_module, codec
from mjexp.autoencoder.codec import LatentCodec
from mjexp.autoencoder.autoencoder_settings import AutoencoderSettings
from mjexp.autoencoder.autoencoder_module import AutoencoderModule, psnr
from mjexp.data.datamodule import recipe_loader
from mjexp.files.checkpoints import SafeCheckpointIO

log = logging.getLogger(__name__)

METRICS_FILE = "autoencoder.json"
PARTIAL_SUFFIX = ".partial"
LAST_CHECKPOINT = "last.ckpt"
# Fields that change the trained weights; the rest (where to cache, how the diffusion model uses
# the latents, a scaling factor set by hand) do not enter the key.
RECIPE_FIELDS = (
    "block_out_channels", "layers_per_block", "latent_channels", "norm_num_groups", "steps", "batch_size",
    "lr", "kl_weight", "disc_start", "disc_weight", "disc_layers", "disc_channels",
)
PROGRESS_EVERY = 50  # updates between progress lines
SCALING_IMAGES = 2048  # training images whose latents set the scaling factor


def train_autoencoder(data: Any, settings: AutoencoderSettings, resolution: int, seed: int = 0,
                      split: str = "train", val_split: str = "val") -> Path:
    """Folder of the autoencoder trained on ``split`` of ``data`` (trained now, resumed, or reused).

    ``data``: a captioned-image DataModule (``dataset(split)``, ``fingerprint(split)``).
    """
    recipe = asdict(settings)
    key = {
        "recipe": {name: recipe[name] for name in RECIPE_FIELDS},
        "resolution": resolution,
        "seed": seed,
        "split": split,
        "data": data.fingerprint(split),
        "code": code_version(),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    folder = Path(settings.cache_dir) / f"{split}-seed{seed}-{digest}"
    if (folder / METRICS_FILE).is_file():
        log.info("reusing autoencoder %s", folder)
        return folder
    start = time.perf_counter()
    module = _fit(data, settings, resolution, seed, split, folder.with_name(folder.name + PARTIAL_SUFFIX))
    vae = module.vae.eval()
    scaling = estimate_scaling_factor(vae, recipe_loader(data.dataset(split), settings.batch_size, seed, False), seed)
    vae.register_to_config(scaling_factor=scaling)
    metrics = {
        "val_psnr": reconstruction_psnr(LatentCodec(vae, scaling), recipe_loader(data.dataset(val_split), settings.batch_size, seed, False)),
        "scaling_factor": scaling,
        "train_seconds": round(time.perf_counter() - start, 2),
        "parameters": sum(p.numel() for p in vae.parameters()),
        "key": key,
    }
    log.info("autoencoder on %r: val PSNR %.2f dB, scaling factor %.4f", split, metrics["val_psnr"], scaling)
    _publish(folder, vae, metrics)
    shutil.rmtree(folder.with_name(folder.name + PARTIAL_SUFFIX), ignore_errors=True)
    return folder


def read_metrics(folder: str | os.PathLike) -> dict:
    """The ``autoencoder.json`` record of a trained folder."""
    return json.loads((Path(folder) / METRICS_FILE).read_text())


def code_version() -> str:
    """Hash of the code that defines the model and its training (edits invalidate the cache)."""
    sources = b"".join(Path(m.__file__).read_bytes() for m in (adversarial, autoencoder_module, codec))
    return f"diffusers {diffusers.__version__}/" + hashlib.sha256(sources + Path(__file__).read_bytes()).hexdigest()[:12]


@torch.no_grad()
def estimate_scaling_factor(vae: "diffusers.AutoencoderKL", loader: DataLoader, seed: int) -> float:
    """``1 / std`` of posterior samples of up to :data:`SCALING_IMAGES` images, as Stable Diffusion
    set its 0.18215: the diffusion model then starts from latents of unit variance."""
    generator = torch.Generator().manual_seed(seed)
    samples, seen = [], 0
    for batch in loader:
        dist = vae.encode(batch["image"]).latent_dist
        noise = torch.randn(dist.mean.shape, generator=generator)
        samples.append((dist.mean + dist.std * noise).flatten())
        seen += len(batch["image"])
        if seen >= SCALING_IMAGES:
            break
    return float(1.0 / torch.cat(samples).std())


@torch.no_grad()
def reconstruction_psnr(codec_: LatentCodec, loader: DataLoader) -> float:
    """PSNR (dB) of decoded posterior means against the images, over the whole loader."""
    total, count = 0.0, 0
    for batch in loader:
        images = batch["image"]
        total += float(psnr(images, codec_.decode(codec_.encode(images)))) * len(images)
        count += len(images)
    return total / count


class _Progress(L.Callback):
    """A line every ``n`` updates: loss, PSNR, speed and time left (no terminal bar: logs stay readable)."""

    def __init__(self, n: int):
        self.n, self.start, self.first = n, 0.0, 0

    def on_train_start(self, trainer: L.Trainer, module: AutoencoderModule) -> None:
        self.start, self.first = time.perf_counter(), int(module.updates)

    def on_train_batch_end(self, trainer: L.Trainer, module: AutoencoderModule, *args: Any) -> None:
        done, total = int(module.updates), module.settings.steps
        if done % self.n and done != total:
            return
        rate = (done - self.first) / max(time.perf_counter() - self.start, 1e-9)
        metrics = trainer.callback_metrics
        print(f"  autoencoder step {done}/{total}  loss {float(metrics['autoencoder/loss']):.1f}  "
              f"PSNR {float(metrics['autoencoder/psnr']):.1f} dB  {rate:.2f} steps/s  "
              f"ETA {int((total - done) / max(rate, 1e-9))} s", flush=True)


class _SaveEveryNUpdates(L.Callback):
    """``last.ckpt`` every ``n`` autoencoder updates (atomic, through SafeCheckpointIO)."""

    def __init__(self, path: Path, n: int):
        self.path, self.n = path, n

    def on_train_batch_end(self, trainer: L.Trainer, module: AutoencoderModule, *args: Any) -> None:
        if int(module.updates) % self.n == 0 and int(module.updates) < module.settings.steps:
            trainer.save_checkpoint(self.path)


def _fit(data: Any, settings: AutoencoderSettings, resolution: int, seed: int, split: str, partial: Path) -> AutoencoderModule:
    partial.mkdir(parents=True, exist_ok=True)
    resume = partial / LAST_CHECKPOINT
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = AutoencoderModule(settings, resolution)
        trainer = L.Trainer(
            accelerator="auto",
            devices=1,
            max_steps=-1,
            max_epochs=-1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=str(partial),
            plugins=[SafeCheckpointIO()],
            callbacks=[_SaveEveryNUpdates(resume, settings.checkpoint_every_n_steps), _Progress(PROGRESS_EVERY)],
        )
        if resume.is_file():
            log.info("continuing the autoencoder's training from %s", resume)
        loader = recipe_loader(data.dataset(split), settings.batch_size, seed, True)
        trainer.fit(module, train_dataloaders=loader, ckpt_path=str(resume) if resume.is_file() else None, weights_only=True)
    return module


def _publish(folder: Path, vae: "diffusers.AutoencoderKL", metrics: dict) -> None:
    """Write into a scratch folder, then rename: readers never see a half-written model."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
    vae.save_pretrained(scratch, safe_serialization=True)
    (scratch / METRICS_FILE).write_text(json.dumps(metrics, indent=2, default=str))
    try:
        os.rename(scratch, folder)
    except OSError:  # another run published the same key first; its result is equivalent
        shutil.rmtree(scratch, ignore_errors=True)
