"""Export folders and loading a trained model from any checkpoint reference.

An export folder is what sampling and evaluation consume and what MLflow stores:

    config.yaml          the resolved training config (rebuilds the model; names the data; its
                         ``sr`` block marks a super-resolution model and its low resolution)
    ema.safetensors      EMA weights (``unet.*`` and, for a trained text encoder, ``text_encoder.*``)
    raw.safetensors      the raw (non-averaged) weights, same keys
    text_encoder/        the domain CLIP folder, when the model is conditioned on one

A checkpoint reference (``ckpt=`` in sample/eval) is an export folder, a Lightning ``.ckpt``
(loaded with ``weights_only=True``), or ``mlflow:<run_id>`` (the run's ``export`` artifact).
A loaded config never switches on downloads (:func:`downloads_as_allowed`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

from mjexp.autoencoder.codec import LatentCodec
from mjexp.autoencoder.latent_cache import weights_hash
from mjexp.autoencoder.pretrained import save_codec
from mjexp.config.domain import sampling_settings
from mjexp.diffusion.schedules import NoiseSchedule
from mjexp.diffusion.superres import SuperResolution
from mjexp.diffusion.training_module import Weights
from mjexp.diffusion.unet import UNet
from mjexp.files.checkpoints import (
    CheckpointError,
    atomic_write,
    load_safetensors,
    load_torch_file,
    state_mismatch,
)
from mjexp.runs.components import (
    autoencoder_codec,
    build_schedule,
    build_super_resolution,
    build_text_encoder,
    build_unet,
    check_loaded_config,
    diffused_shape,
)
from mjexp.sampling.guidance_sampler import GuidanceSampler
from mjexp.sampling.runtime import Runtime
from mjexp.text.base import TextEncoder

MLFLOW_PREFIX = "mlflow:"  # a checkpoint reference to a run's "export" artifact
CONFIG_FILE = "config.yaml"
TEXT_ENCODER_DIR = "text_encoder"
AUTOENCODER_DIR = "autoencoder"  # latent diffusion: the AutoencoderKL, save_pretrained format


@dataclass
class LoadedModel:
    """Everything sampling needs: networks, schedule and the config they came from
    (``super_resolution`` is set for a super-resolution model, the hires fix's ``hires.model``)."""

    unet: UNet
    text_encoder: TextEncoder
    schedule: NoiseSchedule
    parameterization: str
    config: dict[str, Any]
    source: str
    fingerprint: str  # what makes its images (model_fingerprint)
    super_resolution: SuperResolution | None = None
    codec: LatentCodec | None = None  # the autoencoder of a latent model

    @property
    def resolution(self) -> int:
        """Of the images it makes (pixels, whatever space it diffuses in)."""
        return int(self.config["data"]["resolution"])

    def guidance_sampler(
        self, sampling: Any, seed: int, runtime: Runtime, sr_model: "LoadedModel | None" = None
    ) -> GuidanceSampler:
        """The LightningModule that samples this model (:func:`guidance_sampler`)."""
        return guidance_sampler(
            self.unet, self.text_encoder, self.schedule, self.resolution, sampling, seed, runtime, sr_model, self.codec
        )


def guidance_sampler(
    unet: UNet,
    text_encoder: TextEncoder,
    schedule: NoiseSchedule,
    resolution: int,
    sampling: Any,
    seed: int,
    runtime: Runtime,
    sr_model: LoadedModel | None = None,
    codec: LatentCodec | None = None,
) -> GuidanceSampler:
    """The LightningModule that samples these networks with the ``sampler``/``guidance``/``hires``
    settings of ``sampling`` (a config node), items seeded by ``seed``: a loaded model's, or a
    training's own while it trains (:mod:`mjexp.runs.samples_during_training`)."""
    sampler, guidance, hires, negative = sampling_settings(sampling)
    return GuidanceSampler(
        unet, text_encoder, schedule, resolution, sampler, guidance, hires, negative,
        seed=seed, runtime=runtime, sr_model=sr_model, codec=codec,
    )


# Where the text-encoder config says where to find or fetch weights, not what they are.
LOCATION_KEYS: tuple[str, ...] = ("path", "cache_dir", "allow_download")


def model_fingerprint(
    unet: torch.nn.Module, text_encoder: TextEncoder, config: Mapping[str, Any], super_resolution: SuperResolution | None,
    codec: LatentCodec | None = None,
) -> str:
    """SHA-256 of everything of a loaded model that shapes its images at a given resolution: every
    tensor of the U-Net and the text encoder (names, dtypes, shapes, bytes) and the config they
    sample with (networks, schedule, parameterization, super-resolution settings). An export and a
    ``.ckpt`` of the same weights agree; a continued training, the raw instead of the EMA weights
    or another model differ. (The resolution is recorded with each image on its own.)"""
    digest = hashlib.sha256()
    for prefix, module in (("unet.", unet), ("text_encoder.", text_encoder)):
        for name, tensor in sorted(module.state_dict().items()):
            data = tensor.detach().cpu().contiguous()
            digest.update(f"{prefix}{name} {data.dtype} {tuple(data.shape)}\n".encode())
            digest.update(data.reshape(-1).view(torch.uint8).numpy())
    text = {k: v for k, v in (config.get("text_encoder") or {}).items() if k not in LOCATION_KEYS}
    sampling = {
        "text_encoder": text, "unet": config.get("unet"), "schedule": config.get("schedule"),
        "parameterization": config["diffusion"]["parameterization"],
        "super_resolution": None if super_resolution is None else asdict(super_resolution),
    }
    if codec is not None:  # the decoder makes the images: its weights and the latent scaling
        sampling["autoencoder"] = [weights_hash(codec), codec.scaling_factor, codec.shift_factor]
    digest.update(json.dumps(sampling, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def images_fingerprint(model: LoadedModel, sr_model: LoadedModel | None = None) -> str:
    """The identity of the models that make a set of images: the base model, and the
    super-resolution model when the hires fix uses one."""
    return model.fingerprint if sr_model is None else f"{model.fingerprint}+{sr_model.fingerprint}"


def model_state(unet: torch.nn.Module, text_encoder: TextEncoder) -> dict[str, torch.Tensor]:
    """The weights an export stores: the U-Net, plus the text encoder when it was trained here."""
    state = {f"unet.{k}": v for k, v in unet.state_dict().items()}
    if text_encoder.trainable:
        state.update({f"text_encoder.{k}": v for k, v in text_encoder.state_dict().items()})
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def export_model(
    module: Any, config: Mapping[str, Any], folder: str | Path, domain_clip_path: Path | None,
    codec: LatentCodec | None = None,
) -> Path:
    """Write an export folder for a trained :class:`~mjexp.diffusion.training_module.DiffusionModule`
    (with ``autoencoder/``, the latent scaling in its config, for a latent model)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for weights in ("ema", "raw"):
        unet, encoder = module.sampling_networks(weights)
        state = model_state(unet, encoder)
        atomic_write(folder / f"{weights}.safetensors", lambda tmp, s=state: save_file(s, str(tmp)))
    if domain_clip_path is not None:
        target = folder / TEXT_ENCODER_DIR
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(domain_clip_path, target)
    if codec is not None:
        save_codec(codec, folder / AUTOENCODER_DIR)
    atomic_write(folder / CONFIG_FILE, lambda tmp: tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(dict(config)))))
    return folder


def mlflow_run_of(ref: str) -> str | None:
    """The run id of an ``mlflow:<run_id>`` checkpoint reference, else None (a path)."""
    return ref[len(MLFLOW_PREFIX) :] if ref.startswith(MLFLOW_PREFIX) else None


def resolve_reference(ref: str, download_dir: str | Path | None = None) -> Path:
    """Turn ``mlflow:<run_id>`` into a local export folder; paths are returned as they are."""
    run_id = mlflow_run_of(ref)
    if run_id is not None:
        import mlflow  # third-party, only for mlflow: references

        target = Path(download_dir or tempfile.mkdtemp(prefix="mjexp-export-"))
        try:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="export", dst_path=str(target))
        except Exception as error:  # noqa: BLE001 - one message naming the run
            raise CheckpointError(
                f"cannot fetch the 'export' artifact of MLflow run {run_id} "
                f"(tracking URI {mlflow.get_tracking_uri()}): {error}"
            ) from None
        return Path(local)
    path = Path(ref)
    if not path.exists():
        raise CheckpointError(f"checkpoint reference {ref} does not exist (expected an export folder, a .ckpt or mlflow:<run_id>)")
    return path


def _load_state(path: Path, weights: Weights) -> tuple[dict[str, Any], dict[str, torch.Tensor], Path | None]:
    """(config, weights with ``unet.``/``text_encoder.`` keys, domain CLIP folder or None); a latent
    model's export also points its config's ``autoencoder`` at the ``autoencoder/`` folder beside it."""
    if path.is_dir():
        config_file, weights_file = path / CONFIG_FILE, path / f"{weights}.safetensors"
        for needed in (config_file, weights_file):
            if not needed.is_file():
                raise CheckpointError(f"{path} is not an export folder: {needed.name} is missing")
        config = OmegaConf.to_container(OmegaConf.load(config_file), resolve=True)
        if (path / AUTOENCODER_DIR).is_dir():  # its config holds the scaling the model was trained with
            config["autoencoder"].update(path=str(path / AUTOENCODER_DIR), subfolder=None, scaling_factor=None, shift_factor=None)
        clip_dir = path / TEXT_ENCODER_DIR
        return config, load_safetensors(weights_file), clip_dir if clip_dir.is_dir() else None
    checkpoint = load_torch_file(path)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "mjexp_config" not in checkpoint:
        raise CheckpointError(f"{path} is not an mjexp training checkpoint (no state_dict / mjexp_config)")
    prefixes = {"ema": ("ema_unet.averaged.", "ema_text_encoder.averaged."), "raw": ("unet.", "text_encoder.")}[weights]
    state: dict[str, torch.Tensor] = {}
    for source_prefix, target_prefix in zip(prefixes, ("unet.", "text_encoder.")):
        for key, value in checkpoint["state_dict"].items():
            if key.startswith(source_prefix):
                state[target_prefix + key[len(source_prefix) :]] = value
    config = checkpoint["mjexp_config"]
    clip = config.get("text_encoder", {}).get("path")
    return config, state, Path(clip) if clip else None


def load_state_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str, source: str) -> None:
    """``load_state_dict`` whose error names every missing, unexpected and mis-shaped key."""
    problems = state_mismatch(module.state_dict(), state)
    if problems:
        raise CheckpointError(
            f"{source} does not fit this {what} configuration ({'; '.join(problems)}); was it trained with a "
            "different unet / text_encoder config?"
        )
    module.load_state_dict(state)


def downloads_as_allowed(config: dict[str, Any], allow_download: bool, source: str) -> None:
    """Set the loaded config's ``text_encoder.allow_download`` to what the user allows.

    Whether this machine may reach the network is the user's call (their command line or config),
    never a loaded model's: an export from elsewhere could otherwise switch downloads on.
    """
    text = config.get("text_encoder") or {}
    if "allow_download" not in text:
        return
    if text["allow_download"] and not allow_download:
        warnings.warn(
            f"{source} asks for text_encoder.allow_download=true; ignored, a loaded model never enables downloads. "
            "Allow them yourself with allow_download=true (mjexp.sample) or eval.allow_download=true (mjexp.eval)",
            stacklevel=3,
        )
    text["allow_download"] = allow_download


def load_model(
    ref: str | Path, weights: Weights = "ema", download_dir: str | Path | None = None, allow_download: bool = False
) -> LoadedModel:
    """Rebuild the trained networks from an export folder, a ``.ckpt`` or ``mlflow:<run_id>``;
    ``allow_download`` (the user's setting) lets the text encoder fetch missing weights."""
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights={weights!r} must be ema or raw")
    path = resolve_reference(str(ref), download_dir)
    config, state, clip_dir = _load_state(path, weights)
    check_loaded_config(config, str(path))
    downloads_as_allowed(config, allow_download, str(path))
    encoder = build_text_encoder(config["text_encoder"], domain_clip_path=clip_dir)
    parameterization = config["diffusion"]["parameterization"]
    super_resolution = build_super_resolution(config)
    codec = autoencoder_codec({**(config.get("autoencoder") or {"name": "none"}), "allow_download": allow_download})
    channels, size = diffused_shape(int(config["data"]["resolution"]), codec)
    unet = build_unet(config["unet"], encoder, parameterization, super_resolution, channels)
    load_state_strict(unet, {k[5:]: v for k, v in state.items() if k.startswith("unet.")}, "U-Net", str(path))
    if encoder.trainable:
        encoder_state = {k[len("text_encoder.") :]: v for k, v in state.items() if k.startswith("text_encoder.")}
        load_state_strict(encoder, encoder_state, "text encoder", str(path))
    schedule = build_schedule(config["schedule"], size)
    return LoadedModel(
        unet.eval(), encoder.eval(), schedule, parameterization, config, str(path),
        model_fingerprint(unet, encoder, config, super_resolution, codec), super_resolution, codec,
    )


def load_sr_model(ref: str | Path, weights: Weights = "ema", allow_download: bool = False) -> LoadedModel:
    """:func:`load_model` for ``hires.model``: refuses a model trained without ``sr.enabled=true``."""
    loaded = load_model(ref, weights=weights, allow_download=allow_download)
    if loaded.super_resolution is None:
        raise CheckpointError(
            f"hires.model={ref} is not a super-resolution model (its config has no sr.enabled=true); "
            "train one with +experiment=train_sr"
        )
    return loaded
