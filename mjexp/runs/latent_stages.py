"""Latent diffusion's stages before the diffusion model trains: the autoencoder (trained or
reused), a check of what its reconstructions keep, and the training latents (encoded once).

The check reads the validation images and their reconstructions with the exact rule reader
(built-in shapes only, :mod:`evaluation.rule_reader`): an autoencoder that loses an attribute the
prompts name would cap every attribute accuracy downstream, so its per-attribute accuracy on
reconstructions is printed and logged (``autoencoder/recon_acc/<attr>``) beside PSNR.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from evaluation.quantisation import to_uint8
from evaluation.rule_reader import read_images
from mjexp.autoencoder.autoencoder_module import psnr
from mjexp.autoencoder.codec import LatentCodec
from mjexp.autoencoder.kl_train import read_metrics
from mjexp.autoencoder.latent_data import LATENTS_DIR, LatentDataModule
from mjexp.data.datamodule import collate
from mjexp.runs.components import autoencoder_codec, train_or_reuse_autoencoder
from mjexp.runs.eval_run.scoring import RULE_READABLE_DATA
from mjexp.runs.stage_clock import StageClock
from mjexp.runs.tracker import Tracker

CHECK_SPLIT = "val"
# Below this, reconstructions lose what the prompts name (issue's bar: the latent space must keep it).
RECONSTRUCTION_ACCURACY_FLOOR = 0.95


def autoencoder_stages(
    cfg: DictConfig, datamodule: Any, tracker: Tracker, clock: StageClock, resolved: dict[str, Any]
) -> tuple[LatentCodec | None, Any]:
    """The codec (None in pixel space) and what the diffusion model trains on. ``kl``'s trained
    folder is recorded in ``resolved`` so a ``.ckpt`` finds it."""
    if cfg.autoencoder.name == "none":
        return None, datamodule
    if cfg.autoencoder.name == "kl" and cfg.autoencoder.path is None:
        print("Autoencoder: AutoencoderKL (trained on the train split, or reused from the cache)...")
        with clock.stage("autoencoder"):
            folder = train_or_reuse_autoencoder(cfg.autoencoder, datamodule)
        metrics = read_metrics(folder)
        tracker.log_metrics({"autoencoder/scaling_factor": metrics["scaling_factor"]})
        print(f"  {folder.name}: {metrics['parameters']:,} parameters, trained in {metrics['train_seconds']:.0f} s")
        resolved["autoencoder"]["path"] = str(folder)
    codec = autoencoder_codec(resolved["autoencoder"])
    size = codec.latent_size(cfg.data.resolution, cfg.data.resolution)
    with clock.stage("autoencoder check"):
        check = reconstruction_check(codec, datamodule, cfg.data.name == RULE_READABLE_DATA)
    tracker.log_metrics({f"autoencoder/{k}": v for k, v in check.items()})
    read = ", ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in check.items() if k.startswith("recon_acc/"))
    print(f"  latents {codec.latent_channels} x {size[0]} x {size[1]} (f={codec.factor}), scaling factor "
          f"{codec.scaling_factor:.4f}; {CHECK_SPLIT} reconstructions: PSNR {check['psnr']:.2f} dB"
          + (f", rule-read accuracy {read}" if read else ""))
    low = {k: v for k, v in check.items() if k.startswith("recon_acc/") and v < RECONSTRUCTION_ACCURACY_FLOOR}
    if low:
        print(f"  warning: the autoencoder's reconstructions lose what prompts name ({', '.join(low)} below "
              f"{RECONSTRUCTION_ACCURACY_FLOOR}): attribute accuracies of this model are capped by it")
    latents = LatentDataModule(datamodule, codec, Path(cfg.autoencoder.cache_dir) / LATENTS_DIR,
                               cfg.autoencoder.sample_posterior)
    with clock.stage("encoding latents"):
        latents.encode()
    return codec, latents


@torch.no_grad()
def reconstruction_check(codec: LatentCodec, datamodule: Any, rule_readable: bool, batch_size: int = 64) -> dict[str, float]:
    """PSNR of the reconstructions of the check split, and where the data allows, the rule reader's
    per-attribute accuracy on them and on the originals (``real_acc/``: the reader's own ceiling)."""
    originals, reconstructions, attrs = [], [], []
    for batch in DataLoader(datamodule.dataset(CHECK_SPLIT), batch_size=batch_size, collate_fn=collate):
        images = batch["image"]
        originals.append(images)
        reconstructions.append(codec.decode(codec.encode(images)).clamp(-1, 1))
        if "attrs" in batch:
            names = list(batch["attrs"])
            attrs += [{name: batch["attrs"][name][i] for name in names} for i in range(len(images))]
    real, rec = torch.cat(originals), torch.cat(reconstructions)
    result = {"psnr": float(psnr(real, rec))}
    if rule_readable and attrs:
        vocabulary = {k.rsplit("_", 1)[0] if k[-2:] in ("_1", "_2") else k: tuple(v)
                      for k, v in datamodule.attribute_values().items()}
        for prefix, images in (("real_acc/", real), ("recon_acc/", rec)):
            verdicts = read_images(to_uint8(images)[0], attrs, vocabulary)
            result.update({prefix + name: float(flags.mean()) for name, flags in verdicts.items()})
    return result
