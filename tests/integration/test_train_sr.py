"""A super-resolution model trained with the real configs (`+experiment=train_sr debug=tiny`), used
as the hires fix's second pass over a tiny base model by the `mjexp.sample` CLI, and its errors.

The trainings run in-process (the composed config and ``run_training`` are what the CLI runs; a
subprocess would only add ~10 s of imports each); sampling goes through the real command line.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest
from filelock import FileLock
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image
from safetensors import safe_open

from cli_helpers import REPO, run_cli
from mjexp.files.checkpoints import CheckpointError
from mjexp.config import register_configs
from mjexp.runs.models import load_model, load_sr_model
from mjexp.runs.sample_run import run_sampling
from mjexp.runs.eval_run import grid_evaluation
from mjexp.runs.eval_run.run import run_evaluation
from mjexp.runs.train_run import run_training


def compose_config(name: str, *overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def train(root: Path, *overrides: str) -> Path:
    """``python -m mjexp.train <overrides>`` in-process in ``root`` (relative caches land there),
    unless an earlier call (another xdist worker) already left its export there."""
    out = root / "run"
    if not (out / "export" / "ema.safetensors").is_file():
        root.mkdir(exist_ok=True)
        with contextlib.chdir(root):
            run_training(compose_config("train", f"output_dir={out}", "tracking.enabled=false", *overrides))
    return out / "export"


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A base model at 16 px (tiny text encoder) and an SR model 16 -> 32 px (domain CLIP), trained
    once per session however the xdist workers split this module's tests."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker has its own basetemp under the session's
        shared = shared.parent
    shared = shared / "sr-exports"
    shared.mkdir(exist_ok=True)
    with FileLock(str(shared / ".lock")):
        base = train(shared / "base", "debug=tiny", "text_encoder=tiny", "text_encoder.width=16", "text_encoder.heads=2")
        sr = train(shared / "sr", "+experiment=train_sr", "debug=tiny", "trainer.max_steps=10")
    return {"base": base, "sr": sr}


def test_sr_export_records_what_it_is(exports: dict[str, Path]) -> None:
    config = OmegaConf.load(exports["sr"] / "config.yaml")
    assert (config.name, config.data.resolution, config.sr.enabled, config.sr.low_resolution) == ("train_sr", 32, True, 16)
    with safe_open(str(exports["sr"] / "ema.safetensors"), "pt") as f:
        assert f.get_slice("unet.conv_in.weight").get_shape()[1] == 6  # noisy image + conditioning image
        assert any(k.startswith("unet.noise_level_mlp.") for k in f.keys())
    loaded = load_model(exports["sr"])
    assert loaded.super_resolution.ratio == 2.0 and loaded.unet.spec.noise_level_conditioning
    assert load_model(exports["base"]).super_resolution is None


def test_sample_with_the_sr_model_writes_target_size_and_base_images(exports: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_cli("mjexp.sample", f"ckpt={exports['base']}", "hires=sr", f"hires.model={exports['sr']}", "n=2",
            'prompt="a red circle in the top left"', "sampler.steps=2", "hires.steps=2", "guidance.scale=2",
            f"hydra.run.dir={out}", cwd=tmp_path)
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["settings"]["hires"]["upscaler"] == "sr" for r in rows)
    assert rows[0]["nfe"] == 4 and rows[0]["network_evals"] == 8  # 2 base + 2 SR steps, cond and uncond each
    for row in rows:
        assert Image.open(out / row["file"]).size == (32, 32)
        assert Image.open(out / row["base_file"]).size == (16, 16)


def sample_config(tmp_path: Path, *overrides: str):
    return compose_config("sample", f"output_dir={tmp_path / 'out'}", 'prompt="a red circle"', "n=1", *overrides)


def test_sr_misuse_fails_before_sampling_with_the_fix_named(exports: dict[str, Path], tmp_path: Path) -> None:
    wrong_scale = sample_config(tmp_path, f"ckpt={exports['base']}", "hires=sr", f"hires.model={exports['sr']}", "hires.scale=4")
    with pytest.raises(ValueError, match=r"hires.scale=4.0 does not match .* 16 -> 32 px; set hires.scale=2"):
        run_sampling(wrong_scale)
    not_sr = sample_config(tmp_path, f"ckpt={exports['base']}", "hires=sr", f"hires.model={exports['base']}")
    with pytest.raises(CheckpointError, match="is not a super-resolution model"):
        run_sampling(not_sr)
    sr_as_base = sample_config(tmp_path, f"ckpt={exports['sr']}")
    with pytest.raises(ValueError, match="this checkpoint is a super-resolution model"):
        run_sampling(sr_as_base)
    assert not (tmp_path / "out" / "images").exists()


def test_eval_compares_interpolation_and_sr_passes_on_the_same_base_images(
    exports: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = []
    monkeypatch.setattr(grid_evaluation, "load_sr_model", lambda *a, **k: loads.append(a) or load_sr_model(*a, **k))
    out = tmp_path / "out"
    cfg = compose_config(
        "eval", f"output_dir={out}", f"ckpt={exports['base']}", "hires=sr", f"hires.model={exports['sr']}",
        "eval.grid.hires.upscaler=[bicubic,sr]", "sampler.steps=2", "hires.steps=2", "tracking.enabled=false",
        "eval.max_prompts=8", "eval.samples_per_prompt=2", "eval.batch_size=16", "eval.bootstrap=10",
        "eval.progress_bar=false", "eval.judge.embed_dim=8", "eval.judge.width=16", "eval.judge.steps=4",
        "eval.judge.batch_size=16", "eval.judge.warmup_steps=1",
    )
    with contextlib.chdir(tmp_path):
        run_evaluation(cfg)
    assert len(loads) == 1  # once per evaluation, not per setting
    records = json.loads((out / "report.json").read_text())["records"]
    assert [r["hires"] for r in records] == ["x2.0 bicubic strength=0.5 steps=2", "x2.0 sr strength=0.5 steps=2 noise_aug=0.1"]
    assert all("base/fid/judge" in r["metrics"] for r in records)
    folders = [out / "generated" / r["label"] for r in records]
    for name in ("base/p00000_s000.png", "base/p00003_s001.png"):
        first, second = (Image.open(folder / name) for folder in folders)
        assert first.size == (16, 16) and first.tobytes() == second.tobytes()  # the same first stage
    assert Image.open(folders[1] / "images/p00000_s000.png").size == (32, 32)
