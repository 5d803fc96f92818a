"""Super-resolution hires fix: conditioning math, the U-Net's noise-level input, the SR second
pass (what the SR network is given), training's conditioning, and the config errors."""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from mjexp.config import ConfigError, register_configs, validate
from mjexp.diffusion.training_module import DiffusionModule
from mjexp.diffusion.schedules import NoiseSchedule, ScheduleSettings
from mjexp.diffusion.superres import SuperResolution, degrade, noise_augment
from mjexp.diffusion.unet import UNet, UNetSpec
from mjexp.sampling.denoiser import Denoiser
from mjexp.sampling.guidance import Guidance
from mjexp.sampling.hires import SR_CONDITION_STAGE, HiresSettings, SRStage, hires_fix, renoise_grid
from mjexp.sampling.noise import ItemNoise
from mjexp.sampling.samplers import SamplerSettings, sample
from mjexp.text.base import TextEmbedding
from mjexp.text.tiny import TinyTextEncoder
from sampling_helpers import ToyNetwork, linear_schedule

REPO_CONF = str(Path(__file__).resolve().parents[3] / "conf")
SAMPLER = SamplerSettings("euler_ancestral", 3)
MODEL = SuperResolution(resolution=8, low_resolution=4, max_noise_aug=0.3, noise_aug=0.2)


# ---- conditioning math -------------------------------------------------------------------------
def test_noise_augment_endpoints_and_statistics() -> None:
    g = torch.Generator().manual_seed(0)
    x, n = torch.randn(3, 3, 64, 64, generator=g), torch.randn(3, 3, 64, 64, generator=g)
    out = noise_augment(x, torch.tensor([0.0, 1.0, 0.6]), n)
    assert torch.equal(out[0], x[0]) and torch.equal(out[1], n[1])
    torch.testing.assert_close(out[2], 0.8 * x[2] + 0.6 * n[2])
    # A constant image c at level s: mean sqrt(1 - s^2) c, std s; a unit-variance image keeps variance 1.
    constant = torch.full((1, 3, 128, 128), 0.5)
    noise = torch.randn(1, 3, 128, 128, generator=g)
    aug = noise_augment(constant, torch.tensor([0.6]), noise)
    assert float(aug.mean()) == pytest.approx(0.8 * 0.5, abs=0.02)
    assert float(aug.std()) == pytest.approx(0.6, rel=0.03)
    unit = noise_augment(torch.randn(1, 3, 128, 128, generator=g), torch.tensor([0.6]), noise)
    assert float(unit.var()) == pytest.approx(1.0, rel=0.05)
    with pytest.raises(ValueError, match=r"level must have shape \(3,\)"):
        noise_augment(x, torch.tensor([0.1]), n)


def test_degrade_is_block_average_then_bicubic_back() -> None:
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    block_means = x.reshape(2, 3, 4, 2, 4, 2).mean(dim=(3, 5))  # an independent 2x2 box filter
    expected = F.interpolate(block_means, size=(8, 8), mode="bicubic", align_corners=False)
    torch.testing.assert_close(degrade(x, 4), expected)
    constant = torch.full((1, 3, 8, 8), -0.25)
    torch.testing.assert_close(degrade(constant, 4), constant)


def test_super_resolution_settings() -> None:
    assert MODEL.ratio == 2.0
    with pytest.raises(ValueError, match=r"sr.low_resolution=8 must be in \(0, data.resolution=8\)"):
        SuperResolution(8, 8)
    with pytest.raises(ValueError, match=r"sr.noise_aug=1.5 must be in \[0, 1\]"):
        SuperResolution(8, 4, noise_aug=1.5)


# ---- the U-Net's noise-level input ---------------------------------------------------------------
def small_spec(**kw) -> UNetSpec:
    return UNetSpec(channels=16, channel_mult=[1, 2], context_dim=16, pooled_dim=16, head_dim=8, groups=4, **kw)


def text(b: int, value: float = 0.0) -> TextEmbedding:
    g = torch.Generator().manual_seed(2)
    return TextEmbedding(torch.randn(b, 3, 16, generator=g), torch.ones(b, 3, dtype=torch.bool), torch.full((b, 16), value))


# sha256 of the "name shape" lines of small_spec()'s plain state dict as it was before noise-level
# conditioning existed (commit 950da7e): parameter names are the export format, so they must not move.
PLAIN_KEYS_SHA256 = "2c3aa49de8a593cefd136fef0bfefebac47122eaccc9af3d408d70208d9b3b6f"


def test_plain_unet_parameters_are_unchanged_and_the_level_branch_is_additive() -> None:
    torch.manual_seed(0)
    plain = UNet(small_spec())
    lines = "\n".join(f"{k} {tuple(v.shape)}" for k, v in plain.state_dict().items())
    assert hashlib.sha256(lines.encode()).hexdigest() == PLAIN_KEYS_SHA256
    conditioned = UNet(small_spec(noise_level_conditioning=True))
    extra = set(conditioned.state_dict()) - set(plain.state_dict())
    assert set(plain.state_dict()) <= set(conditioned.state_dict())
    assert extra and all(k.startswith("noise_level_mlp.") for k in extra)
    for p in plain.parameters():  # perturb zero-initialised layers so outputs are informative
        p.data.add_(0.02 * torch.randn_like(p))
    conditioned.load_state_dict(plain.state_dict(), strict=False)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([5.0, 600.0])
    # A fresh (zero-output) level branch changes nothing; a trained one makes the level matter.
    fresh = conditioned(x, t, text=text(2), noise_level=torch.tensor([0.0, 0.9]))
    torch.testing.assert_close(fresh, plain(x, t, text=text(2)), rtol=0, atol=0)
    conditioned.noise_level_mlp[2].weight.data.normal_(0, 0.1)
    low = conditioned(x, t, text=text(2), noise_level=torch.tensor([0.0, 0.0]))
    high = conditioned(x, t, text=text(2), noise_level=torch.tensor([0.5, 0.5]))
    assert (low - high).abs().max() > 1e-4
    with pytest.raises(ValueError, match="noise_level_conditioning=True; got noise_level=None"):
        conditioned(x, t, text=text(2))
    with pytest.raises(ValueError, match=r"noise_level_conditioning=False; got noise_level=\(2,\)"):
        plain(x, t, text=text(2), noise_level=torch.zeros(2))


# ---- the SR second pass --------------------------------------------------------------------------
class RecordingNetwork(ToyNetwork):
    """A toy denoiser that records every call's input size and conditioning."""

    def __init__(self, parameterization: str = "eps") -> None:
        super().__init__(parameterization)
        self.calls: list[dict] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor, **cond: object) -> torch.Tensor:
        self.calls.append({"size": tuple(x.shape[-2:]), "batch": x.shape[0], "t": float(t[0]), **cond})
        return super().__call__(x, t)


def sr_setup(noise_aug: float | None, scale: float = 2.0, guidance: float = 1.0):
    base_net, sr_net = RecordingNetwork("eps"), RecordingNetwork("v")
    base = Denoiser(base_net, linear_schedule())  # type: ignore[arg-type]
    noise = ItemNoise.for_prompts(3, [0, 1], 1, (3, 4, 4))
    cond = {"text": text(2, 1.0)}
    sr_cond, sr_uncond = {"text": text(2, 7.0)}, {"text": text(2, -7.0)}
    # The SR model's own schedule (500 training steps) puts its timesteps where the base model's are not.
    sr_schedule = NoiseSchedule(ScheduleSettings("linear", 500, 1e-4, 0.02, zero_terminal_snr=True))
    stage = SRStage(Denoiser(sr_net, sr_schedule), sr_cond, sr_uncond, MODEL)  # type: ignore[arg-type]
    hires = HiresSettings(
        enabled=True, scale=scale, upscaler="sr", strength=0.5, steps=2, guidance_scale=guidance, noise_aug=noise_aug
    )
    return base_net, sr_net, base, noise, cond, stage, hires


@pytest.mark.parametrize("noise_aug", [None, 0.5])
def test_sr_pass_runs_the_sr_model_on_the_augmented_upsampled_base_image(noise_aug: float | None) -> None:
    base_net, sr_net, base, noise, cond, stage, hires = sr_setup(noise_aug)
    out = hires_fix(base, noise, cond, None, sampler=SAMPLER, guidance=Guidance(1.0), hires=hires, sr=stage)
    plain = sample(base, noise, cond, None, sampler=SAMPLER, guidance=Guidance(1.0))
    assert torch.equal(out.base_images, plain.images) and out.images.shape == (2, 3, 8, 8)
    assert {c["size"] for c in base_net.calls} == {(4, 4)}  # the base model never runs at 8 x 8
    assert len(sr_net.calls) == 2 and {c["size"] for c in sr_net.calls} == {(8, 8)}
    grid = renoise_grid(stage.denoiser.schedule, replace(SAMPLER, steps=2), 0.5)
    assert [c["t"] for c in sr_net.calls] == grid.timesteps.tolist()
    level = MODEL.noise_aug if noise_aug is None else noise_aug
    up = F.interpolate(plain.images.clamp(-1, 1), size=(8, 8), mode="bicubic", align_corners=False)
    aug_noise = noise.at_stage(SR_CONDITION_STAGE, (3, 8, 8)).initial()
    expected = math.sqrt(1 - level**2) * up + level * aug_noise
    for call in sr_net.calls:
        torch.testing.assert_close(call["image"], expected)
        assert torch.equal(call["noise_level"], torch.full((2,), level))
        assert torch.equal(call["text"].pooled, stage.cond["text"].pooled)  # the SR model's own text
    assert (out.nfe, out.network_evals) == (plain.nfe + 2, plain.network_evals + 2)


def test_sr_pass_guidance_batches_the_image_with_both_branches() -> None:
    _, sr_net, base, noise, cond, stage, hires = sr_setup(0.1, guidance=3.0)
    hires_fix(base, noise, cond, None, sampler=SAMPLER, guidance=Guidance(1.0), hires=hires, sr=stage)
    call = sr_net.calls[0]
    assert call["batch"] == 4 and torch.equal(call["image"][:2], call["image"][2:])
    assert call["text"].pooled[:2, 0].tolist() == [7.0, 7.0] and call["text"].pooled[2:, 0].tolist() == [-7.0, -7.0]


def test_sr_errors_and_disabled_is_plain_sampling() -> None:
    base_net, sr_net, base, noise, cond, stage, hires = sr_setup(0.1, scale=3.0)
    with pytest.raises(ValueError, match=r"hires.scale=3.0 does not match .* 4 -> 8 px; set hires.scale=2"):
        hires_fix(base, noise, cond, None, sampler=SAMPLER, guidance=Guidance(1.0), hires=hires, sr=stage)
    with pytest.raises(ValueError, match="hires.upscaler=sr needs a super-resolution model: set hires.model="):
        hires_fix(base, noise, cond, None, sampler=SAMPLER, guidance=Guidance(1.0),
                  hires=HiresSettings(enabled=True, upscaler="sr"))
    off = hires_fix(base, noise, cond, None, sampler=SAMPLER, guidance=Guidance(1.0),
                    hires=HiresSettings(enabled=False, upscaler="sr"), sr=stage)
    plain = sample(base, noise, cond, None, sampler=SAMPLER, guidance=Guidance(1.0))
    assert torch.equal(off.images, plain.images) and off.base_images is None and not sr_net.calls
    with pytest.raises(ValueError, match=r"hires.noise_aug must be in \[0, 1\]"):
        HiresSettings(noise_aug=-0.1)


# ---- training an SR model --------------------------------------------------------------------------
def test_training_conditions_on_the_degraded_image_and_its_level() -> None:
    encoder = TinyTextEncoder(width=16, layers=1, heads=2, max_length=8)
    spec = small_spec(image_channels=3, noise_level_conditioning=True)
    seen: list[dict] = []
    unet = UNet(spec)
    unet.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs), with_kwargs=True)
    x0 = torch.rand(4, 3, 8, 8) * 2 - 1
    batch = {"image": x0, "text": ["a red circle"] * 4}
    for max_aug in (0.0, 0.4):
        sr = SuperResolution(8, 4, max_noise_aug=max_aug)
        module = DiffusionModule(unet, encoder, linear_schedule(), super_resolution=sr)
        loss = module.diffusion_loss(unet, encoder, batch, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(loss)
    clean, augmented = seen
    torch.testing.assert_close(clean["image"], degrade(x0, 4))
    assert torch.equal(clean["noise_level"], torch.zeros(4))
    assert ((augmented["noise_level"] > 0) & (augmented["noise_level"] <= 0.4)).all()
    with pytest.raises(ValueError, match="needs a U-Net with image_channels=3 and noise_level_conditioning=true"):
        DiffusionModule(UNet(small_spec()), encoder, linear_schedule(), super_resolution=MODEL)


# ---- config validation ---------------------------------------------------------------------------
def compose_config(name: str, *overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=REPO_CONF, version_base="1.3"):
        return compose(name, overrides=["output_dir=unused", *overrides])


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("sample", ("ckpt=x", "hires=sr"), "hires.upscaler=sr needs hires.model="),
        ("sample", ("ckpt=x", "hires=bicubic", "hires.model=sr_export"), "hires.model=sr_export is only used with hires.upscaler=sr"),
        ("train", ("+experiment=train_sr", "sr.low_resolution=32"), r"sr.low_resolution=32 must be in \(0, data.resolution=32\)"),
        ("train", ("+experiment=train_sr", "eval.grid.guidance.scale=[1]"), "evaluated through a base model's hires fix"),
    ],
)
def test_config_errors_name_the_keys(name: str, overrides: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(compose_config(name, *overrides))


def test_train_sr_experiment_and_sr_grid_compose() -> None:
    cfg = compose_config("train", "+experiment=train_sr", "debug=tiny")
    validate(cfg)
    assert (cfg.name, cfg.data.resolution, cfg.sr.enabled, cfg.sr.low_resolution, dict(cfg.eval.grid)) == (
        "train_sr", 32, True, 16, {}
    )
    # One evaluation can compare the same-model SDEdit pass with the SR model on the same noise.
    validate(compose_config("eval", "ckpt=x", "hires=sr", "hires.model=m", "eval.grid.hires.upscaler=[bicubic,sr]",
                            "eval.grid.hires.noise_aug=[0.0,0.2]"))
