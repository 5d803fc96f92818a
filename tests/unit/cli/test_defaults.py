"""Each default is written once, on the domain objects: what the commands build from their default
configs equals what the Python API builds with no arguments."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mjexp.autoencoder.autoencoder_settings import AutoencoderSettings
from mjexp.config import register_configs, schema
from mjexp.config.domain import build, sampling_settings
from mjexp.data.cifar import CIFAR10DataModule
from mjexp.data.digits import DigitsDataModule
from mjexp.data.imagefolder import ImageFolderDataModule
from mjexp.data.dataset_settings import DATA_SETTINGS, ImageFolderSettings
from mjexp.data.shapes import ShapesDataModule
from mjexp.diffusion.schedules import NoiseSchedule, ScheduleSettings
from mjexp.diffusion.superres import SuperResolution
from mjexp.diffusion.training_module import DiffusionModule, DiffusionSettings, OptimSettings
from mjexp.diffusion.unet import UNetSpec
from mjexp.runs.components import DATA_MODULES, build_datamodule, build_schedule
from mjexp.sampling.guidance import Guidance
from mjexp.sampling.hires import HiresSettings
from mjexp.sampling.samplers import SamplerSettings
from mjexp.text.clip_module import DomainClipConfig

REPO = Path(__file__).resolve().parents[3]


@functools.cache  # composing costs ~0.3 s; the tests only read the result
def composed(command: str, *overrides: str):  # noqa: ANN201
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(command, overrides=["output_dir=unused", *overrides])


@pytest.mark.parametrize(
    ("command", "overrides"), [("train", ()), ("eval", ("ckpt=x",)), ("sample", ("ckpt=x", "prompt=a"))]
)
def test_every_command_samples_with_the_api_defaults(command: str, overrides: tuple[str, ...]) -> None:
    sampler, guidance, hires, negative = sampling_settings(composed(command, *overrides))
    assert (sampler, guidance, hires, negative) == (SamplerSettings(), Guidance(), HiresSettings(), "")
    assert (sampler.name, guidance.scale, guidance.dynamic_threshold, hires.enabled) == ("ddim", 3.0, None, False)


def test_training_builds_the_api_defaults() -> None:
    cfg = composed("train")
    settings = build(DiffusionSettings, cfg.diffusion)
    assert settings == DiffusionSettings() and settings.parameterization == "v"
    assert build(OptimSettings, cfg.optim, total_steps=cfg.trainer.max_steps) == OptimSettings(total_steps=1800)
    assert build(UNetSpec, cfg.unet) == UNetSpec()
    assert build(DomainClipConfig, cfg.text_encoder) == DomainClipConfig()
    assert build(SuperResolution, cfg.sr, resolution=16) == SuperResolution(resolution=16)
    assert build(AutoencoderSettings, cfg.autoencoder) == AutoencoderSettings() and cfg.autoencoder.name == "none"
    assert DiffusionModule.__init__.__defaults__[0] is None  # settings=None: DiffusionSettings()


@pytest.mark.parametrize(
    ("data", "api_default"),
    [
        ("shapes", ShapesDataModule), ("digits", DigitsDataModule), ("cifar10", CIFAR10DataModule),
        ("imagefolder", lambda: ImageFolderDataModule(ImageFolderSettings(root="photos"))),  # root: required
    ],
)
def test_every_data_set_loads_with_the_api_defaults(data: str, api_default) -> None:  # noqa: ANN001
    """``data=<name>`` builds the module ``<Module>()`` builds (modules read no files until asked)."""
    choice = {"shapes": (), "imagefolder": ("data=imagefolder", "data.root=photos")}.get(data, (f"data={data}",))
    cfg = composed("train", *choice)  # shapes: the default data
    cli, api = build_datamodule(cfg.data), api_default()
    assert type(cli) is type(api) and cli.settings == api.settings
    if data == "shapes":
        assert (api.resolution, api.batch_size, api.settings.train_size, api.holdout) == (16, 32, 20000, [])
    # The module takes its settings, not a second list of fields with their own defaults.
    assert list(inspect.signature(type(api)).parameters) == ["settings"]


def test_training_builds_the_api_noise_schedule() -> None:
    cfg = composed("train")
    cli, api = build_schedule(cfg.schedule, cfg.data.resolution), NoiseSchedule()
    assert cli.settings == api.settings == ScheduleSettings()
    assert (api.kind, api.num_train_timesteps, api.zero_terminal_snr) == ("linear", 1000, False)
    assert torch.equal(cli.alphas_cumprod, api.alphas_cumprod)
    # The SNR shift's base resolution reaches the schedule, scaled by the data's resolution.
    shifted_cfg = OmegaConf.merge(cfg.schedule, {"snr_shift_base_resolution": 32})
    shifted = NoiseSchedule(ScheduleSettings(snr_shift_base_resolution=32), resolution=16)
    assert torch.equal(build_schedule(shifted_cfg, cfg.data.resolution).alphas_cumprod, shifted.alphas_cumprod)
    assert not torch.equal(shifted.alphas_cumprod, api.alphas_cumprod)


def test_a_schema_holds_its_domain_fields_once() -> None:
    """The config groups are derived from the domain classes: same fields (minus what code sets),
    same defaults, so a default cannot drift between the two."""
    pairs = [
        (schema.SamplerConfig, SamplerSettings, ()), (schema.GuidanceConfig, Guidance, ()),
        (schema.HiresConfig, HiresSettings, ()), (schema.DiffusionConfig, DiffusionSettings, ()),
        (schema.OptimConfig, OptimSettings, ("total_steps",)), (schema.DomainClipTextConfig, DomainClipConfig, ()),
        (schema.UNetConfig, UNetSpec, ("in_channels", "out_channels", "image_channels", "noise_level_conditioning",
                                       "context_dim", "pooled_dim")),
        (schema.SuperResolutionConfig, SuperResolution, ("resolution",)),
        (schema.ScheduleConfig, ScheduleSettings, ()), (schema.AutoencoderConfig, AutoencoderSettings, ()),
        *((schema.DATA_SCHEMAS[name], settings, ()) for name, settings in DATA_SETTINGS.items()),
    ]
    assert DATA_SETTINGS.keys() == schema.DATA_SCHEMAS.keys() == DATA_MODULES.keys()
    for config, domain, computed in pairs:
        config_defaults = {f.name: _default(f) for f in dataclasses.fields(config)}
        for spec in dataclasses.fields(domain):
            if spec.name in computed:
                assert spec.name not in config_defaults, (config.__name__, spec.name)
                continue
            expected = _default(spec)
            expected = list(expected) if isinstance(expected, tuple) else expected
            assert config_defaults[spec.name] == expected, (config.__name__, spec.name)


def _default(spec: dataclasses.Field):  # noqa: ANN202
    if spec.default is not dataclasses.MISSING:
        return spec.default
    return spec.default_factory() if spec.default_factory is not dataclasses.MISSING else "???"  # required
