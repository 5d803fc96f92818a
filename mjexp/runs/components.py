"""Config -> components. Components are chosen by ``name`` from the fixed registries below.

These registries are the whole set of classes a config can instantiate: a saved config loaded
back for sampling or evaluation can name nothing else (see :func:`check_loaded_config`), so a
downloaded checkpoint cannot smuggle in an arbitrary ``_target_``.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any, Callable, Mapping

from omegaconf import DictConfig, OmegaConf

from mjexp.autoencoder.autoencoder_settings import AutoencoderSettings
from mjexp.autoencoder.codec import LatentCodec
from mjexp.autoencoder.kl_train import train_autoencoder
from mjexp.autoencoder.pretrained import load_codec
from mjexp.config.domain import build
from mjexp.data.dataset_settings import DATA_SETTINGS
from mjexp.diffusion.schedules import NoiseSchedule, ScheduleSettings
from mjexp.diffusion.superres import SuperResolution
from mjexp.diffusion.unet import UNet, UNetSpec
from mjexp.text.base import TextEncoder
from mjexp.text.clip_module import DomainClipConfig
from mjexp.text.clip_train import train_domain_clip
from mjexp.text.encoders import build_text_encoder as build_encoder

DATA_MODULES: dict[str, str] = {
    "shapes": "mjexp.data.shapes:ShapesDataModule",
    "digits": "mjexp.data.digits:DigitsDataModule",
    "imagefolder": "mjexp.data.imagefolder:ImageFolderDataModule",
    "cifar10": "mjexp.data.cifar:CIFAR10DataModule",
}
TEXT_ENCODERS: tuple[str, ...] = ("tiny", "open_clip", "hf", "domain_clip")


def _plain(cfg: Any) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def _load(path: str) -> Callable[..., Any]:
    module, name = path.split(":")
    return getattr(import_module(module), name)


def check_loaded_config(config: Mapping[str, Any], source: str) -> None:
    """Refuse a saved config that names anything outside the registries."""

    def walk(node: Any, key: str) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                if k == "_target_":
                    raise ValueError(
                        f"{source}: refusing to load a config with '_target_' at {key or '<root>'} ({v!r}); "
                        "mjexp builds components by name from a fixed registry and never instantiates "
                        "classes named by a saved config"
                    )
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{key}[{i}]")

    walk(config, "")
    data_name = (config.get("data") or {}).get("name")
    text_name = (config.get("text_encoder") or {}).get("name")
    if data_name not in DATA_MODULES:
        raise ValueError(f"{source}: data.name={data_name!r} is not one of {sorted(DATA_MODULES)}")
    if text_name not in TEXT_ENCODERS:
        raise ValueError(f"{source}: text_encoder.name={text_name!r} is not one of {list(TEXT_ENCODERS)}")


def build_datamodule(data_cfg: Any) -> Any:
    """The LightningDataModule named by ``data.name``, with the settings of the rest of ``data_cfg``."""
    name = _plain(data_cfg)["name"]
    if name not in DATA_MODULES:
        raise ValueError(f"unknown data {name!r}; choose one of {sorted(DATA_MODULES)}")
    return _load(DATA_MODULES[name])(build(DATA_SETTINGS[name], data_cfg))


def domain_clip_settings(text_cfg: Any) -> Any:
    """The trainer recipe part of a ``domain_clip`` text-encoder config."""
    return build(DomainClipConfig, text_cfg)


def domain_clip_data(data_cfg: Any, text_cfg: Any, datamodule: Any) -> Any:
    """The data a domain CLIP text encoder trains on: ``datamodule`` itself, or the same data with
    the encoder's own ``text_encoder.caption_noise`` (same images, other train captions), so the
    effect of noisy captions on the diffusion model can be separated from that on the encoder."""
    rate = _plain(text_cfg).get("caption_noise")
    data = _plain(data_cfg)
    if rate is None or rate == data.get("caption_noise", 0.0):
        return datamodule
    if "caption_noise" not in data:
        raise ValueError(
            f"text_encoder.caption_noise={rate} needs data with caption noise (data=shapes); "
            f"data={data.get('name')} has none"
        )
    return build_datamodule({**data, "caption_noise": rate})


def train_or_reuse_domain_clip(text_cfg: Any, datamodule: Any, split: str = "train", seed: int | None = None) -> Path:
    """Folder of the domain CLIP for this data (trained now, or reused from the cache)."""
    settings = _plain(text_cfg)
    return Path(
        train_domain_clip(
            datamodule, domain_clip_settings(text_cfg), settings["cache_dir"], split=split,
            seed=settings["seed"] if seed is None else seed,
        )
    )


def train_or_reuse_autoencoder(autoencoder_cfg: Any, datamodule: Any) -> Path:
    """Folder of the ``autoencoder=kl`` model for this data (trained now, or reused from the cache)."""
    settings = build(AutoencoderSettings, autoencoder_cfg)
    return train_autoencoder(datamodule, settings, datamodule.resolution, settings.seed).resolve()


def diffused_shape(resolution: int, codec: LatentCodec | None) -> tuple[int, int]:
    """(channels, size) of what the diffusion model works on: the images, or ``codec``'s latents."""
    if codec is None:
        return 3, resolution
    return codec.latent_channels, codec.latent_size(resolution, resolution)[0]


def autoencoder_codec(autoencoder_cfg: Any) -> LatentCodec | None:
    """The run's autoencoder with its latent scaling, from ``autoencoder.path`` (None in pixel space)."""
    settings = build(AutoencoderSettings, autoencoder_cfg)
    if not settings.enabled:
        return None
    if settings.path is None:
        raise ValueError("autoencoder=kl needs its trained folder in autoencoder.path (train_or_reuse_autoencoder)")
    return load_codec(settings.path, settings.subfolder, settings.scaling_factor, settings.shift_factor,
                      settings.allow_download, settings.bf16)


def resolve_package_path(name_or_path: str) -> str:
    """``pkg:<package>/<folder>`` -> that folder inside an installed package (models shipped in wheels)."""
    if not name_or_path.startswith("pkg:"):
        return name_or_path
    package, _, inner = name_or_path[len("pkg:") :].partition("/")
    try:
        root = Path(import_module(package).__file__).parent
    except ImportError:
        raise ValueError(f"{name_or_path}: package {package!r} is not installed (run `make install`)") from None
    folder = root / inner
    if not folder.exists():
        raise ValueError(f"{name_or_path}: {folder} does not exist")
    return str(folder)


def build_text_encoder(text_cfg: Any, domain_clip_path: str | Path | None = None) -> TextEncoder:
    """The encoder named by ``text_encoder.name``; ``domain_clip`` needs its trained folder."""
    kwargs = _plain(text_cfg)
    name = kwargs.pop("name")
    if "name_or_path" in kwargs:
        kwargs["name_or_path"] = resolve_package_path(kwargs["name_or_path"])
    model_config = kwargs.pop("model_config", None)
    if model_config:
        import open_clip

        if not Path(model_config).is_file():
            raise FileNotFoundError(f"text_encoder.model_config={model_config} does not exist")
        open_clip.add_model_config(model_config)  # registered under the file's stem
    if name == "domain_clip":
        if domain_clip_path is None:
            raise ValueError("text_encoder=domain_clip needs a trained folder (train_or_reuse_domain_clip)")
        return build_encoder("domain_clip", path=str(domain_clip_path))
    return build_encoder(name, **kwargs)


def build_schedule(schedule_cfg: Any, resolution: int) -> NoiseSchedule:
    """The noise schedule of a ``schedule`` config for data of ``resolution`` px (its SNR shift depends on it)."""
    return NoiseSchedule(build(ScheduleSettings, schedule_cfg), resolution)


def build_super_resolution(config: Mapping[str, Any]) -> SuperResolution | None:
    """The ``sr`` block of a training config as settings; None for a plain model (or a config
    written before the block existed)."""
    sr = config.get("sr")
    if not sr or not sr["enabled"]:
        return None
    return build(SuperResolution, sr, resolution=int(config["data"]["resolution"]))


def build_unet(
    unet_cfg: Any, encoder: TextEncoder, parameterization: str, super_resolution: SuperResolution | None = None,
    channels: int = 3,
) -> UNet:
    """A U-Net whose cross-attention width matches the text encoder and whose ``channels`` match
    what it diffuses (3 for pixels, the autoencoder's latent channels); a super-resolution model's
    also takes the conditioning image (as many channels as it outputs) and its noise level."""
    spec = build(UNetSpec, unet_cfg, context_dim=encoder.dim, pooled_dim=encoder.pooled_dim,
                 in_channels=channels, out_channels=channels)
    if super_resolution is not None:
        spec.image_channels, spec.noise_level_conditioning = spec.in_channels, True
    return UNet(spec, parameterization=parameterization)


def describe_sampling(sampling_cfg: Any) -> str:
    """One line naming how a command generates: sampler, steps, guidance and hires fix."""
    s, g, h = (sampling_cfg[key] for key in ("sampler", "guidance", "hires"))
    grid = f"{s.spacing}{', karras' if s.karras else ''}{'' if s.eta is None else f', eta {s.eta}'}"
    guidance = [f"guidance {g.scale:g}"]
    if g.schedule != "constant":
        guidance.append(f"{g.schedule} ramp")
    if g.interval is not None:
        guidance.append(f"inside sigma {list(g.interval)}")
    if g.rescale:
        guidance.append(f"rescale {g.rescale:g}")
    if g.dynamic_threshold is not None:
        guidance.append(f"threshold {g.dynamic_threshold:g}")
    if g.negative_prompt:
        guidance.append(f"negative prompt {g.negative_prompt!r}")
    hires = f"hires x{h.scale:g} {h.upscaler} strength {h.strength:g}, {h.steps} steps" if h.enabled else "no hires fix"
    if h.enabled and h.get("space", "latent") != "latent":
        hires += f" in {h.space} space"
    return f"{s.name}, {s.steps} steps ({grid}); {', '.join(guidance)}; {hires}"
