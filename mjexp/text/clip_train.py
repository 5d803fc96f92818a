"""Train a domain CLIP once per content hash and keep it in open_clip's ``local-dir`` format.

The folder holds ``open_clip_config.json`` (``model_cfg`` + ``preprocess_cfg``),
``open_clip_model.safetensors`` and ``domain_clip.json`` (val retrieval accuracy and the hashed
inputs), so ``open_clip.create_model_and_transforms("local-dir:<folder>")`` loads it without
mjexp (the evaluation judge) and ``build_text_encoder("domain_clip", path=<folder>)`` conditions on
it. The key hashes the model config, the training config, the seed, the split, a fingerprint of
the data and the training code, so a second run with the same inputs reuses the folder.
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
from typing import Any, Iterable, Mapping

import lightning as L
import open_clip
import torch
from safetensors.torch import save_file

from mjexp.data.datamodule import recipe_loader
from mjexp.text import clip_module, photometric
from mjexp.text.clip_module import DomainClipConfig, TextEncoderModule

log = logging.getLogger(__name__)

CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
METRICS_FILE = "domain_clip.json"
# open_clip's transforms end in ToTensor + Normalize: mean = std = 0.5 maps [0, 1] to the [-1, 1]
# of the batch contract, so the model sees the same pixels through either path.
PREPROCESS_CFG = {
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


def train_domain_clip(
    data: Any,
    config: DomainClipConfig,
    cache_dir: str | os.PathLike,
    split: str = "train",
    seed: int = 0,
    val_split: str = "val",
) -> Path:
    """Folder of the domain CLIP trained on ``split`` of ``data`` (trained now, or reused).

    ``data``: a captioned-image DataModule (``dataset(split)``, ``fingerprint(split)``; loaders
    are built here with ``config.batch_size`` and a ``seed``-ed shuffle) or a mapping from split
    name to a re-iterable loader of batches, used as given (its own batch size and order) and
    identified by a hash of its content. ``val_split`` only measures retrieval accuracy.
    """
    train_loader = _loader(data, split, config.batch_size, seed, train=True)
    val_loader = _loader(data, val_split, config.batch_size, seed, train=False)
    height, image_size = next(iter(val_loader))["image"].shape[-2:]
    if height != image_size:
        raise ValueError(f"domain CLIP expects square images, got {height}x{image_size} in split {val_split!r}")
    model_cfg = config.model_cfg(image_size)
    key = {
        "model_cfg": model_cfg,
        "config": asdict(config),
        "split": split,
        "seed": seed,
        "data": {s: _fingerprint(data, s, loader) for s, loader in ((split, train_loader), (val_split, val_loader))},
        "code": code_version(),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    folder = Path(cache_dir) / f"{split}-seed{seed}-{digest}"
    if (folder / METRICS_FILE).is_file():
        log.info("reusing domain CLIP %s", folder)
        return folder
    start = time.perf_counter()
    module = _fit(model_cfg, config, train_loader, seed)
    module.eval()
    metrics = {
        "val_retrieval_top1": module.retrieval_accuracy(val_loader),
        "train_seconds": round(time.perf_counter() - start, 2),
        "key": key,
    }
    log.info("domain CLIP on %r: val image->text top-1 %.3f", split, metrics["val_retrieval_top1"])
    _publish(folder, module.clip, model_cfg, metrics)
    return folder


def read_metrics(folder: str | os.PathLike) -> dict:
    """The ``domain_clip.json`` record of a trained folder (val retrieval accuracy, inputs)."""
    return json.loads((Path(folder) / METRICS_FILE).read_text())


def code_version() -> str:
    """Hash of the code that defines the model and its training (edits invalidate the cache)."""
    sources = b"".join(Path(path).read_bytes() for path in (clip_module.__file__, photometric.__file__, __file__))
    return f"open_clip {open_clip.__version__}/" + hashlib.sha256(sources).hexdigest()[:12]


def _loader(data: Any, split: str, batch_size: int, seed: int, train: bool) -> Iterable[dict]:
    if isinstance(data, Mapping):
        if split not in data:
            raise KeyError(f"domain CLIP needs the {split!r} split; the loaders given are {sorted(data)}")
        return data[split]
    return recipe_loader(data.dataset(split), batch_size, seed, train)


def _fingerprint(data: Any, split: str, loader: Iterable[dict]) -> Any:
    """The DataModule's own description of a split, else an order-independent hash of its content."""
    if not isinstance(data, Mapping):
        return data.fingerprint(split)
    digests = []
    for batch in loader:
        images = batch["image"].detach().cpu().float().contiguous()
        for image, text in zip(images, batch["text"]):
            digests.append(hashlib.sha256(image.numpy().tobytes() + text.encode()).digest())
    return hashlib.sha256(b"".join(sorted(digests))).hexdigest()


def _fit(model_cfg: dict, config: DomainClipConfig, train_loader: Iterable[dict], seed: int) -> TextEncoderModule:
    with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory() as scratch:
        torch.manual_seed(seed)
        module = TextEncoderModule(model_cfg, config)
        trainer = L.Trainer(
            accelerator="auto",
            devices=1,
            max_steps=config.steps,
            max_epochs=-1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=scratch,
        )
        trainer.fit(module, train_dataloaders=train_loader)
    return module


def _publish(folder: Path, clip: torch.nn.Module, model_cfg: dict, metrics: dict) -> None:
    """Write into a scratch folder, then rename: readers never see a half-written model, and of
    two concurrent trainings of one key the first rename wins."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
    preprocess = {**PREPROCESS_CFG, "size": model_cfg["vision_cfg"]["image_size"]}
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess}
    (scratch / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    save_file({k: v.detach().cpu().contiguous() for k, v in clip.state_dict().items()}, str(scratch / WEIGHTS_FILE))
    (scratch / METRICS_FILE).write_text(json.dumps(metrics, indent=2, default=str))
    try:
        os.rename(scratch, folder)
    except OSError:  # another run published the same key first; its result is equivalent
        shutil.rmtree(scratch, ignore_errors=True)
