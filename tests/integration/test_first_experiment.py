"""A researcher's first experiment on a folder of 300 captioned images, as the docs tell it
(docs/data.md): train, sample, evaluate, compare, with ``debug=tiny`` as the only override besides
the folder; what is too small is said before anything trains, what is fitted is said once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from cli_helpers import run_cli
from mjexp.data.dataset_settings import ShapesSettings
from mjexp.data.shapes import ShapesDataModule


def write_folder(root: Path, n: int = 300) -> Path:
    """``n`` captioned 16 px images in the imagefolder layout, rendered by the shapes renderer."""
    (root / "images").mkdir(parents=True)
    settings = ShapesSettings(resolution=16, train_size=n, judge_size=1, val_size=1, test_size=1)
    split = ShapesDataModule(settings).dataset("train")
    rows = []
    for i in range(n):
        item = split[i]
        pixels = ((item["image"] + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
        Image.fromarray(pixels).save(root / f"images/{i:04d}.png")
        rows.append(json.dumps({"file_name": f"images/{i:04d}.png", "text": item["text"]}))
    (root / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.slow  # five commands, ~60 s; the fast suite checks its parts (tests/unit/cli/test_data_requirements.py, test_sweeps_sqlite.py)
def test_train_sample_eval_compare_on_300_images(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "photos")
    data = ("data=imagefolder", f"data.root={folder}")
    store = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")

    run_cli("mjexp.train", *data, "debug=tiny", f"hydra.run.dir={tmp_path / 'train'}", cwd=tmp_path)
    export = tmp_path / "train" / "export"
    [training] = store.search_runs([store.get_experiment_by_name("default").experiment_id])
    assert training.info.status == "FINISHED"

    sampled = run_cli("mjexp.sample", f"ckpt={export}", "prompt=a red circle in the top left", "n=2",
                      f"hydra.run.dir={tmp_path / 'sample'}", cwd=tmp_path)
    assert "Sampling 1 prompt(s) x 2: ddim, 20 steps" in sampled.stdout  # the sampler is named, as in eval
    assert Image.open(tmp_path / "sample" / "grid.png").width >= 2 * 96  # upscaled to be seen

    # The default judge (64-dimensional features) needs 65 reference images; the test split has ~30.
    refused = run_cli("mjexp.eval", f"ckpt={export}", "debug=tiny", "eval.judge.embed_dim=64",
                      f"hydra.run.dir={tmp_path / 'refused'}", cwd=tmp_path, check=False)
    assert refused.returncode == 2, refused.stderr
    assert "error: the data is too small for this run (nothing was trained)" in refused.stderr
    assert "fid/judge needs at least 65 reference images (feature dimension 64 + 1); the test split" in refused.stderr
    assert "eval.reference_split" in refused.stderr and "eval.judge.embed_dim" in refused.stderr
    assert not (tmp_path / ".cache" / "mjexp" / "judge").exists()  # nothing trained before the refusal

    evaluated = run_cli("mjexp.eval", f"ckpt={export}", "debug=tiny", "eval.judge.batch_size=64",
                        f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    out = evaluated.stdout
    assert "Note: eval.judge.batch_size=64 is more than the judge split's" in out
    assert "Prompts: the first 8 captions of the test split (eval.prompt_set=auto chose it" in out
    assert "Judge validity on" in out and "caption retrieval top-1" in out
    record = json.loads((tmp_path / "eval" / "report.json").read_text())["records"][0]
    retrieval = record["judge_validity"]["retrieval"]
    # Among 32 captions, or all of the split's distinct ones when it has fewer (~30 images here).
    assert 2 <= retrieval["candidates"] <= 32 and retrieval["chance"] == 1 / retrieval["candidates"]
    # A judge of 4 steps on ~30 images is weak: below the threshold, its metrics are flagged.
    assert not retrieval["reliable"] and "fid/judge" in record["unreliable_metrics"]
    refused_run, parent = sorted((r for r in store.search_runs([store.get_experiment_by_name("eval").experiment_id])
                                  if "mlflow.parentRunId" not in r.data.tags), key=lambda r: r.info.start_time)
    assert refused_run.info.status == "FAILED" and "the data is too small" in refused_run.data.tags["error"]
    assert parent.info.status == "FINISHED" and parent.data.params["prompts.version"] == "test split"
    assert int(parent.data.params["effective.eval.judge.batch_size"]) < 64

    compared = run_cli("sweeps.compare", "eval", "--out", str(tmp_path / "cmp"), cwd=tmp_path)
    assert "1 arm(s), 1 unfinished" in compared.stdout  # the refused evaluation is listed, with its error
    assert "the judge failed its validity check on real images" in compared.stdout and "†" in compared.stdout
