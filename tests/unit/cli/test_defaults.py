"""Each default is written once, on the domain objects: what the commands build from their default
configs equals what the Python API builds with no arguments."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from mjexp.config import register_configs, schema
from mjexp.config.domain import build, sampling_settings
from mjexp.diffusion.superres import SuperResolution
from mjexp.diffusion.training_module import DiffusionModule, DiffusionSettings, OptimSettings
from mjexp.diffusion.unet import UNetSpec
from mjexp.sampling.guidance import Guidance
from mjexp.sampling.hires import HiresSettings
from mjexp.sampling.samplers import SamplerSettings
from mjexp.text.clip_module import DomainClipConfig

REPO = Path(__file__).resolve().parents[3]


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
    assert build(OptimSettings, cfg.optim, total_steps=cfg.trainer.max_steps) == OptimSettings(total_steps=1500)
    assert build(UNetSpec, cfg.unet) == UNetSpec()
    assert build(DomainClipConfig, cfg.text_encoder) == DomainClipConfig()
    assert build(SuperResolution, cfg.sr, resolution=16) == SuperResolution(resolution=16)
    assert DiffusionModule.__init__.__defaults__[0] is None  # settings=None: DiffusionSettings()


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
    ]
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
    return spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
