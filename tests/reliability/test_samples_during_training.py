"""``trainer.sample_every_n_steps``: a sample grid and the judge's attribute accuracy in MLflow every
N steps of a training, with the judge trained before the model; the training itself unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from reliability_helpers import TINY, run_cli, sqlite_uri, train

MEAN = "during_training/attr_acc/judge/mean"
ATTRIBUTES = ("color", "shape", "position")  # of the default prompt set, shapes_single_v1
FAST_FRAMES = ("sampler.steps=2", "eval.batch_size=32")  # the frames only: training is the same at any setting


def logged_frames(root: Path, out: Path) -> tuple[list[int], dict[str, dict[int, float]]]:
    """The steps of the run's ``samples/step_NNNNNN.png`` artifacts, and every during-training
    metric by step, as MLflow holds them."""
    run_id = json.loads((out / "run.json").read_text())["mlflow_run_id"]
    store = MlflowClient(sqlite_uri(root))
    grids = sorted(int(Path(a.path).stem.removeprefix("step_")) for a in store.list_artifacts(run_id, "samples"))
    metrics = {
        name: {m.step: m.value for m in store.get_metric_history(run_id, name)}
        for name in store.get_run(run_id).data.metrics if name.startswith("during_training/")
    }
    return grids, metrics


def first_training_step_time(out: Path) -> float:
    """When the run logged its first ``train/loss`` (the journal's clock)."""
    events = (json.loads(line) for line in (out / "tracking_journal.jsonl").read_text().splitlines())
    return next(e["time"] for e in events if e["event"] == "metrics" and "train/loss" in e["metrics"])


def judge_written_at(cache: Path) -> float:
    [record] = cache.glob("judge-seed1-*/domain_clip.json")
    return record.stat().st_mtime


def test_frames_leave_training_unchanged_and_continue_on_resume_without_a_judge(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The frames of a first run (no judge cached) at steps 2 and 4 with the judge's accuracy; the
    weights equal those of the same training without frames. Resumed with the judge off, the run
    logs the grid of step 6 alone and says why once."""
    out, judges = tmp_path / "run", tmp_path / "judges"
    train(out, "trainer.sample_every_n_steps=2", f"eval.judge.cache_dir={judges}", *FAST_FRAMES)
    grids, metrics = logged_frames(tmp_path, out)
    assert grids == [2, 4]
    assert set(metrics) == {MEAN, *(f"during_training/{reading}/{a}" for a in ATTRIBUTES for reading in
                                    ("attr_acc/judge", "attr_acc/rule", "judge_agreement")), "during_training/attr_acc/rule/mean"}
    assert all(sorted(by_step) == [2, 4] and all(0 <= v <= 1 for v in by_step.values()) for by_step in metrics.values())
    assert judge_written_at(judges) < first_training_step_time(out)  # trained before the model
    grid = Image.open(out / "samples" / "step_000004.png")
    assert grid.width >= 4 * 96 and grid.height >= 8 * 96  # 8 prompts (rows) x 4 images, each upscaled to be seen
    printed = capsys.readouterr().out
    assert "samples at step 2: " in printed and "samples at step 4: " in printed
    for name in ("ema.safetensors", "raw.safetensors"):
        assert (out / "export" / name).read_bytes() == (trained / "export" / name).read_bytes(), name

    train(out, "ckpt_path=last", "trainer.max_steps=6", "trainer.sample_every_n_steps=2", "eval.judge.enabled=false",
          *FAST_FRAMES)
    grids, metrics = logged_frames(tmp_path, out)
    assert grids == [2, 4, 6] and sorted(metrics[MEAN]) == [2, 4]
    printed = capsys.readouterr().out
    assert printed.count("no attribute accuracy: eval.judge.enabled=false") == 1
    assert "samples at step 6: " in printed and "samples at step 4: " not in printed


@pytest.mark.slow  # a CLI training in a subprocess (~20 s); the test above checks the same in-process
def test_a_first_run_through_the_cli_logs_frames_with_a_judge_trained_before_the_model(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = run_cli("mjexp.train", *TINY, f"output_dir={out}", f"tracking.tracking_uri={sqlite_uri(tmp_path)}",
                   "trainer.sample_every_n_steps=2", *FAST_FRAMES, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    order = [next(i for i, line in enumerate(lines) if line.startswith(start)) for start in
             ("Judge: domain CLIP on the judge split", "Samples during training: every 2 steps, 8 prompts x 4 images",
              "samples at step 2: ", "samples at step 4: ", "Done.")]
    assert order == sorted(order), done.stdout
    grids, metrics = logged_frames(tmp_path, out)
    assert grids == [2, 4] and sorted(metrics[MEAN]) == [2, 4] and all(0 <= v <= 1 for v in metrics[MEAN].values())
    assert judge_written_at(tmp_path / ".cache" / "mjexp" / "judge") < first_training_step_time(out)
