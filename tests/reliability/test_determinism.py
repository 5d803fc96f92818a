"""Same seed and config on CPU -> identical weights and images; per-item seeds make images
independent of batch size and of the number of processes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image
from reliability_helpers import (
    REPO,
    FloatImageSaver,
    float_images,
    journal_steps,
    train,
)
from safetensors.torch import load_file

from mjexp.config.domain import sampling_settings
from mjexp.runs.generation import generate_to_folder
from mjexp.runs.models import load_model
from mjexp.sampling.guidance_sampler import GuidanceSampler

PROMPTS = ["a red circle in the top left", "a blue square in the bottom right", "a green triangle in the top right"]
SAMPLES = 2


def sampler_module(export: Path, seed: int = 0) -> GuidanceSampler:
    """The trained model sampled with euler_ancestral (fresh per-step noise too) at 10 steps."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("sample", overrides=[f"ckpt={export}", "output_dir=unused", "sampler=euler_ancestral",
                                           "sampler.steps=10"])
    sampler, guidance, hires, negative = sampling_settings(cfg)
    loaded = load_model(export)
    return GuidanceSampler(loaded.unet, loaded.text_encoder, loaded.schedule, int(loaded.config["data"]["resolution"]),
                           sampler, guidance, hires, negative, seed=seed)


def pngs(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)).astype(np.int16) for p in sorted((folder / "images").glob("*.png"))}


def generate(module: GuidanceSampler, folder: Path, batch_size: int, **trainer_kwargs) -> dict[str, np.ndarray]:
    settings = {"test": "determinism"}
    generate_to_folder(module, PROMPTS, SAMPLES, folder, settings, batch_size,
                       trainer_kwargs={"accelerator": "cpu", "enable_progress_bar": False, **trainer_kwargs},
                       model="the trained export")  # every folder here is new: nothing to tell apart
    return pngs(folder)


def test_same_seed_and_config_give_identical_exported_weights(trained: Path, tmp_path: Path) -> None:
    train(tmp_path / "again")
    for name in ("ema.safetensors", "raw.safetensors"):
        assert (tmp_path / "again" / "export" / name).read_bytes() == (trained / "export" / name).read_bytes(), name


def test_weights_do_not_depend_on_whether_the_domain_clip_was_trained_or_reused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The first run trains the text encoder into an empty cache, the second reuses it; both
    print the encoder's retrieval accuracy. The second also samples a grid every 2 steps
    (``trainer.sample_every_n_steps``) with the frozen encoder whose embedding cache it trains with."""
    clip = ("text_encoder=domain_clip", f"text_encoder.cache_dir={tmp_path / 'clip-cache'}")
    frames = ("trainer.sample_every_n_steps=2", "sampler.steps=2", "eval.judge.enabled=false")
    reports = []
    for name, extra in (("trained-clip", ()), ("reused-clip", frames)):
        train(tmp_path / name, *clip, *extra)
        reports.append([line for line in capsys.readouterr().out.splitlines() if "val image->text retrieval" in line])
    assert len(reports[0]) == 1 and reports[0] == reports[1], reports
    assert sorted(p.name for p in (tmp_path / "reused-clip" / "samples").iterdir()) == ["step_000002.png", "step_000004.png"]
    for name in ("ema.safetensors", "raw.safetensors"):
        assert (tmp_path / "trained-clip" / "export" / name).read_bytes() == (
            tmp_path / "reused-clip" / "export" / name
        ).read_bytes(), name


def test_validating_at_other_steps_does_not_change_training_and_the_last_step_is_validated(
    trained: Path, tmp_path: Path
) -> None:
    """Validation draws nothing from the random stream that training noise comes from; a training
    whose last step is not a multiple of the interval still reports val/loss at its end."""
    out = tmp_path / "validated-at-3"
    train(out, "trainer.val_check_interval=3")  # 4 steps
    assert journal_steps(out, "val/loss") == [0, 3, 4]
    for name in ("ema.safetensors", "raw.safetensors"):
        assert (out / "export" / name).read_bytes() == (trained / "export" / name).read_bytes(), name


def test_images_are_identical_across_runs_and_independent_of_batch_size(trained: Path, tmp_path: Path) -> None:
    module = sampler_module(trained / "export")
    first = generate(module, tmp_path / "batch6", batch_size=6)
    again = generate(sampler_module(trained / "export"), tmp_path / "batch6-again", batch_size=6)
    single = generate(module, tmp_path / "batch1", batch_size=1)
    assert len(first) == len(PROMPTS) * SAMPLES
    assert first.keys() == again.keys() == single.keys()
    for name in first:
        assert np.array_equal(first[name], again[name]), name  # bitwise, run to run
    # Batched and single-item network passes differ in float rounding only: below one PNG level.
    assert max(np.abs(first[n] - single[n]).max() for n in first) <= 1

    items = [(i, j) for i in range(len(PROMPTS)) for j in range(SAMPLES)]
    prompts = [PROMPTS[i] for i, _ in items]
    batched = module.generate(prompts, items)["images"]
    one_by_one = torch.cat([module.generate([p], [item])["images"] for p, item in zip(prompts, items)])
    assert torch.allclose(batched, one_by_one, atol=1e-4, rtol=0)
    other_seed = sampler_module(trained / "export", seed=1).generate(prompts, items)["images"]
    assert not torch.allclose(batched, other_seed, atol=1e-2)  # the seed does matter


def test_images_are_independent_of_the_number_of_processes(trained: Path, tmp_path: Path) -> None:
    """2-process DDP (gloo, CPU) prediction: each rank writes its own manifest shard, and every
    image equals the single-process one within 1e-4 (in [-1, 1], before PNG rounding)."""
    single = generate(sampler_module(trained / "export"), tmp_path / "one", batch_size=2,
                      callbacks=[FloatImageSaver(tmp_path / "one-float")])
    spread = generate(sampler_module(trained / "export"), tmp_path / "two", batch_size=2, devices=2,
                      strategy="ddp_spawn", callbacks=[FloatImageSaver(tmp_path / "two-float")])
    assert sorted(p.name for p in (tmp_path / "two").glob("manifest*.jsonl")) == [
        "manifest.rank0.jsonl", "manifest.rank1.jsonl"]
    assert spread.keys() == single.keys() and len(single) == len(PROMPTS) * SAMPLES
    assert max(np.abs(single[n] - spread[n]).max() for n in single) <= 1
    one, two = float_images(tmp_path / "one-float"), float_images(tmp_path / "two-float")
    assert one.keys() == two.keys() and len(one) == len(PROMPTS) * SAMPLES
    assert max((one[k] - two[k]).abs().max().item() for k in one) <= 1e-4


def test_two_process_ddp_training(tmp_path: Path) -> None:
    """CPU DDP (gloo, ddp_spawn): each rank trains on its half of every epoch; the export is the checkpoint.
    The sample grids of ``trainer.sample_every_n_steps`` (its callback pickled into the processes)
    are made by rank 0 alone."""
    out = tmp_path / "run"
    train(out, "trainer.devices=2", "trainer.strategy=ddp_spawn", "trainer.sample_every_n_steps=4", "sampler.steps=2",
          "eval.judge.enabled=false")
    events = [json.loads(line) for line in (out / "tracking_journal.jsonl").read_text().splitlines()]
    frames = [Path(e["path"]).name for e in events if e["event"] == "artifact" and e["artifact_path"] == "samples"]
    assert frames == ["step_000004.png"]  # once: rank 0's
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 4
    # 64 images over 2 ranks in batches of 16: 2 batches per rank and epoch, so 4 steps end epoch 1.
    assert checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 1, "batches_done": 2}]
    raw = load_file(str(out / "export" / "raw.safetensors"))
    assert all(torch.equal(checkpoint["state_dict"][k], v) for k, v in raw.items())
