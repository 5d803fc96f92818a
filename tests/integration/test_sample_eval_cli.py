"""`mjexp.sample` and `mjexp.eval` on a model trained by the real CLI (debug-sized)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from cli_helpers import TINY_TRAINING, only_output_dir, run_cli

JUDGE = ("eval.judge.embed_dim=8", "eval.judge.width=16", "eval.judge.steps=4", "eval.judge.batch_size=16",
         "eval.judge.warmup_steps=1", "eval.bootstrap=10", "eval.progress_bar=false")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """An export folder from a 6-step training with the tiny text encoder."""
    root = tmp_path_factory.mktemp("trained")
    run_cli("mjexp.train", "text_encoder=tiny", "data.train_size=64", "data.val_size=16", "data.test_size=16",
            "data.judge_size=16", *TINY_TRAINING, "trainer.max_steps=6", cwd=root)
    return only_output_dir(root) / "export"


def test_sample_writes_grid_pngs_and_manifest(trained: Path, tmp_path: Path) -> None:
    run_cli("mjexp.sample", f"ckpt={trained}", 'prompt="a red circle in the top left"', "n=3",
            "sampler=dpmpp_2m", "sampler.steps=4", "guidance.scale=5", f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    out = tmp_path / "out"
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted((r["prompt_index"], r["sample_index"]) for r in rows) == [(0, 0), (0, 1), (0, 2)]
    assert all(r["prompt"] == "a red circle in the top left" and r["settings"]["guidance"]["scale"] == 5 for r in rows)
    assert Image.open(out / rows[0]["file"]).size == (16, 16)
    assert Image.open(out / "grid.png").size[0] > 16 * 3


def test_sample_from_prompt_files_and_empty_file_error(trained: Path, tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text('{"prompt": "a blue square"}\n{"prompt": "a green triangle"}\n')
    run_cli("mjexp.sample", f"ckpt={trained}", f"prompts={tmp_path / 'p.jsonl'}", "n=1", "sampler.steps=2",
            f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert len((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()) == 2
    (tmp_path / "empty.txt").write_text("\n  \n")
    done = run_cli("mjexp.sample", f"ckpt={trained}", f"prompts={tmp_path / 'empty.txt'}", cwd=tmp_path, check=False)
    assert done.returncode == 2 and "is empty" in done.stderr.splitlines()[-1]


def test_eval_grid_logs_nested_runs_and_report(trained: Path, tmp_path: Path) -> None:
    run_cli("mjexp.eval", f"ckpt={trained}", "eval.max_prompts=6", "eval.samples_per_prompt=2", "data.test_size=40",
            "sampler.steps=3", "eval.grid={sampler:[ddim,euler]}", "eval.grid.guidance.scale=[1,3]", *JUDGE,
            f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(report["records"]) == 4
    record = report["records"][-1]
    assert {"fid/judge", "clip_score/judge", "attr_acc/judge/color", "attr_acc/judge/mean"} <= set(record["metrics"])
    assert record["nfe"] == 3 and record["network_evals"] == 6 and record["judge_validity"] is not None
    assert report["records"][0]["network_evals"] == 3  # scale 1: the conditional branch only
    assert record["params"]["patch_fid"]["compared_at"] == [16, 16] and record["metrics"]["patch_fid"] >= 0
    assert record["paired_patch_fid_vs_first"]["baseline"] == report["records"][0]["label"]
    assert {"difference", "standard_error", "z", "low", "high"} <= set(record["paired_fid_vs_first"]["metrics"]["fid/judge"])
    assert (tmp_path / "out" / "pareto.png").is_file() and (tmp_path / "out" / "report.html").is_file()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("eval")
    runs = client.search_runs([experiment.experiment_id])
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id]
    assert len(parent) == 1 and len(children) == 4
    assert all("fid/judge" in c.data.metrics and c.info.status == "FINISHED" for c in children)
    # Each setting's paired differences vs the first go to its run, naming the first one's run.
    by_label = {c.info.run_name: c for c in children}
    first = by_label[report["records"][0]["label"]]
    assert not [k for k in first.data.metrics if k.startswith("paired/")]
    last = by_label[record["label"]]
    assert last.data.params["paired.baseline"] == first.info.run_name
    fid = record["paired_fid_vs_first"]["metrics"]["fid/judge"]
    assert last.data.metrics["paired/fid/judge"] == pytest.approx(fid["difference"])
    assert last.data.metrics["paired/fid/judge/se"] == pytest.approx(fid["standard_error"])
    assert last.data.metrics["paired/attr_acc/judge/mean/se"] == pytest.approx(record["paired_vs_first"]["standard_error"])
    assert last.data.metrics["paired/patch_fid"] == pytest.approx(record["paired_patch_fid_vs_first"]["difference"])


def test_eval_of_a_hires_setting_compares_patches_with_the_reference_made_at_its_size(
    trained: Path, tmp_path: Path
) -> None:
    done = run_cli("mjexp.eval", f"ckpt={trained}", "hires=bicubic", "hires.steps=2", "hires.strength=0.3", "sampler.steps=2",
            "eval.max_prompts=6", "eval.samples_per_prompt=2", *JUDGE,
            f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    record = json.loads((tmp_path / "out" / "report.json").read_text())["records"][0]
    assert record["params"]["images"]["height"] == 32
    assert record["params"]["patch_fid"]["compared_at"] == [32, 32]
    assert record["params"]["patch_fid"]["n_reference"] == 16  # the model's test split
    assert record["metrics"]["patch_fid/ci_low"] <= record["metrics"]["patch_fid"] <= record["metrics"]["patch_fid/ci_high"]
    assert record["metrics"]["base/patch_fid"] >= 0  # the first stage, against the 16 px reference
    assert "Patch FID reference: the test split made at 32 px" in done.stdout


def test_eval_scores_a_folder_of_outside_images(trained: Path, tmp_path: Path) -> None:
    generated = tmp_path / "outside"
    run_cli("mjexp.sample", f"ckpt={trained}", 'prompt="a red circle in the top left"', "n=12", "sampler.steps=2",
            f"hydra.run.dir={generated}", cwd=tmp_path)
    rows = [json.loads(line) for line in (generated / "manifest.jsonl").read_text().splitlines()]
    attrs = {"color": "red", "shape": "circle", "position": "top left"}
    (generated / "metadata.jsonl").write_text(
        "".join(json.dumps({"file_name": r["file"], "text": r["prompt"], "attrs": attrs}) + "\n" for r in rows)
    )
    run_cli("mjexp.eval", f"images={generated}", "data.test_size=40", *JUDGE, f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    record = json.loads((tmp_path / "out" / "report.json").read_text())["records"][0]
    assert record["sampler"] == "external" and record["params"]["images"]["n_images"] == 12
    assert {"fid/judge", "clip_score/judge", "attr_acc/judge/color"} <= set(record["metrics"])
    # One prompt x 12 images: a diversity, but no SE over prompts (null in JSON, left out of the page).
    assert record["metrics"]["diversity/judge"] > 0 and record["metrics"]["diversity/judge/se"] is None
    assert (tmp_path / "out" / "report.html").is_file() and not (tmp_path / "out" / "pareto.png").exists()
