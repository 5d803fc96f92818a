"""Training latents, encoded once per (autoencoder weights, data) and kept on disk.

The file ``<cache_dir>/latents-<digest>.safetensors`` holds the posterior of every image of a
split, unscaled (``mean``, ``logvar``: a changed scaling factor reuses it, and training may use the
mean or sample the posterior), and records its key (a SHA-256 of the autoencoder's weights and
config, and the split's fingerprint) in its metadata. A changed autoencoder or data set has another
digest, so it never reads a stale file; a file whose recorded key does not match (copied or
renamed) is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset

from mjexp.autoencoder.codec import LatentCodec, Posterior
from mjexp.data.datamodule import collate

log = logging.getLogger(__name__)

ENCODE_BATCH = 64


def weights_hash(codec: LatentCodec) -> str:
    """SHA-256 of the autoencoder's config and weights (what its latents depend on); the config's
    bookkeeping (``_name_or_path``, ``_diffusers_version``, ...) is left out, so a copy loaded from
    another folder is the same autoencoder."""
    config = {k: v for k, v in dict(codec.vae.config).items() if not k.startswith("_")}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(codec.vae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class StaleLatentCache(ValueError):
    """A latent cache file written for another autoencoder or data set."""


def cached_posteriors(codec: LatentCodec, dataset: Dataset, fingerprint: Any, cache_dir: str | os.PathLike) -> Posterior:
    """The posterior of every image of ``dataset`` in order: read from the cache, or encoded now."""
    key = json.dumps({"autoencoder": weights_hash(codec), "data": fingerprint}, sort_keys=True, default=str)
    path = Path(cache_dir) / f"latents-{hashlib.sha256(key.encode()).hexdigest()[:16]}.safetensors"
    if path.is_file():
        return read_posteriors(path, key)
    start = time.perf_counter()
    means, logvars = [], []
    for batch in DataLoader(dataset, batch_size=ENCODE_BATCH, shuffle=False, collate_fn=collate):
        posterior = codec.posterior(batch["image"])
        means.append(posterior.mean)
        logvars.append(posterior.logvar)
    posterior = Posterior(torch.cat(means), torch.cat(logvars))
    log.info("encoded %d images to latents in %.1f s -> %s", len(posterior.mean), time.perf_counter() - start, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    save_file({"mean": posterior.mean.contiguous(), "logvar": posterior.logvar.contiguous()}, str(tmp), metadata={"key": key})
    os.replace(tmp, path)
    return posterior


def read_posteriors(path: Path, key: str) -> Posterior:
    with safe_open(str(path), framework="pt") as file:
        recorded = (file.metadata() or {}).get("key")
        if recorded != key:
            raise StaleLatentCache(
                f"latent cache {path} was written for another autoencoder or data set; delete it (it is "
                "re-encoded on the next run)"
            )
        return Posterior(file.get_tensor("mean"), file.get_tensor("logvar"))
