"""Latent diffusion through the real configs: a tiny ``autoencoder=kl`` model trained, exported,
loaded back (export and ``.ckpt``), sampled with the hires fix in both spaces, evaluated, and a
second model on the same autoencoder through ``autoencoder=pretrained`` reusing the cached latents.

Trainings run in-process (as in test_train_sr.py); one training is shared by the module.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from omegaconf import OmegaConf
from PIL import Image

from mjexp.config import ConfigError, validate
from mjexp.runs.models import load_model
from mjexp.runs.sample_run import run_sampling
from mjexp.runs.train_run import run_training
from mjexp.sampling.runtime import Runtime
from test_train_sr import compose_config

TINY_LATENT = (
    "debug=tiny", "autoencoder=kl", "text_encoder=tiny", "text_encoder.width=16", "text_encoder.heads=2",
    "data.two_objects=true", "trainer.max_steps=6",
    "eval.grid.guidance.scale=[1.0]", "hires.steps=2", "hires.strength=0.5",
    "+eval.extra_grids=[{hires:{enabled:[true],space:[pixel]}}]",
)
PROMPT = 'prompt="a red circle in the top left and a blue square in the bottom right"'


def train(root: Path, *overrides: str) -> Path:
    out = root / "run"
    if not (out / "export" / "ema.safetensors").is_file():
        root.mkdir(exist_ok=True)
        with contextlib.chdir(root):
            run_training(compose_config("train", f"output_dir={out}", "tracking.enabled=false", *overrides))
    return out


@pytest.fixture(scope="module")
def latent_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    shared = shared / "latent-run"
    shared.mkdir(exist_ok=True)
    with FileLock(str(shared / ".lock")):
        return train(shared, *TINY_LATENT)


def test_latent_model_exports_its_autoencoder_and_loads_back(latent_run: Path) -> None:
    export = latent_run / "export"
    config = json.loads((export / "autoencoder" / "config.json").read_text())
    assert config["scaling_factor"] > 0 and config["latent_channels"] == 4
    loaded = load_model(export)
    assert loaded.codec is not None and loaded.codec.scaling_factor == pytest.approx(config["scaling_factor"])
    assert loaded.unet.spec.in_channels == loaded.unet.spec.out_channels == 4
    assert loaded.resolution == 16 and loaded.codec.latent_size(16, 16) == (4, 4)
    checkpoint = sorted((latent_run / "checkpoints").glob("*.ckpt"))[-1]
    assert load_model(checkpoint).fingerprint == loaded.fingerprint  # .ckpt finds the cached autoencoder


def test_latent_model_evaluated_with_decode_costs(latent_run: Path) -> None:
    report = json.loads((latent_run / "eval" / "report.json").read_text())
    base, hires = report["records"]
    assert base["hires"] == "off" and "space=pixel" in hires["hires"]
    for record in (base, hires):
        assert 0 < record["costs"]["decode_seconds"] < record["costs"]["generation_seconds"]
        assert "attr_acc/rule/mean" in record["metrics"]
    assert "base/attr_acc/rule/mean" in hires["metrics"]


def test_hires_fix_in_latent_and_pixel_space(latent_run: Path, tmp_path: Path) -> None:
    images = {}
    for space in ("latent", "pixel"):
        out = tmp_path / space
        run_sampling(compose_config(
            "sample", f"ckpt={latent_run / 'export'}", "hires=bicubic", f"hires.space={space}", "hires.steps=2",
            "hires.strength=0.5", "sampler.steps=3", "n=2", PROMPT, f"output_dir={out}",
        ))
        rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        assert Image.open(out / rows[0]["file"]).size == (32, 32) and Image.open(out / rows[0]["base_file"]).size == (16, 16)
        assert rows[0]["decode_seconds"] > 0
        images[space] = torch.tensor(list(Image.open(out / rows[0]["file"]).getdata()), dtype=torch.float32)
    # the same base sample and noise; only the upscale's space differs
    assert not torch.equal(images["latent"], images["pixel"])


def test_pretrained_autoencoder_gives_the_same_latents_from_the_cache(latent_run: Path) -> None:
    root = latent_run.parent
    latents = root / ".cache" / "mjexp" / "autoencoders" / "latents"
    before = sorted(latents.glob("latents-*.safetensors"))
    assert before
    out = root / "pretrained-run"
    with contextlib.chdir(root):
        run_training(compose_config(
            "train", f"output_dir={out}", "tracking.enabled=false", *TINY_LATENT, "autoencoder=pretrained",
            f"autoencoder.path={latent_run / 'export' / 'autoencoder'}", "trainer.max_steps=2", "evaluate=false",
        ))
    assert sorted(latents.glob("latents-*.safetensors")) == before  # same weights and data: no re-encoding
    assert load_model(out / "export").codec.scaling_factor == load_model(latent_run / "export").codec.scaling_factor


def test_latent_bad_input_is_named_before_training(latent_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.resolution=18 must be divisible by 8: the autoencoder downsamples 4x"):
        validate(compose_config("train", "output_dir=x", *TINY_LATENT, "data.resolution=18"))
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        with contextlib.chdir(tmp_path):
            run_training(compose_config("train", f"output_dir={tmp_path / 'out'}", "tracking.enabled=false",
                                        *TINY_LATENT, "autoencoder=pretrained", f"autoencoder.path={tmp_path}"))
    cfg = compose_config("sample", f"ckpt={latent_run / 'export'}", "hires=sr", "hires.model=sr", PROMPT, "output_dir=s")
    sampling = OmegaConf.create({"sampler": cfg.sampler, "guidance": cfg.guidance, "hires": cfg.hires})
    with pytest.raises(ValueError, match="hires.upscaler=sr refines pixels"):
        load_model(latent_run / "export").guidance_sampler(sampling, 0, Runtime())


@pytest.mark.slow
def test_two_process_gloo_training_on_cached_latents(latent_run: Path) -> None:
    """CPU DDP (gloo, ddp_spawn) on the latents the shared run cached: nothing is re-encoded, and
    the ranks' LatentDataModule (codec and posteriors pickled into each process) trains one model."""
    root = latent_run.parent
    latents = root / ".cache" / "mjexp" / "autoencoders" / "latents"
    before = sorted(latents.glob("latents-*.safetensors"))
    out = root / "ddp-run"
    with contextlib.chdir(root):
        run_training(compose_config(
            "train", f"output_dir={out}", "tracking.enabled=false", *TINY_LATENT, "autoencoder=pretrained",
            f"autoencoder.path={latent_run / 'export' / 'autoencoder'}", "trainer.max_steps=4", "evaluate=false",
            "trainer.devices=2", "trainer.strategy=ddp_spawn",
        ))
    assert sorted(latents.glob("latents-*.safetensors")) == before
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 4 and load_model(out / "export").codec is not None
