"""SIGKILL between two checkpoints, then `ckpt_path=last`: the run ends as if never interrupted.

9 steps over 64 images in batches of 16 (2.25 epochs), checkpoints every 3 steps. The run is
killed once step 4 has been logged, i.e. after the step-3 checkpoint, mid-epoch, before step 6.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from reliability_helpers import TINY, journal_steps, kill_when, sqlite_uri, train

STEPS = 9
SCHEDULE = (f"trainer.max_steps={STEPS}", "trainer.checkpoint_every_n_steps=3", "trainer.val_check_interval=3")


def max_abs_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_killed_run_resumes_exactly(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    train(reference, *SCHEDULE)

    killed = tmp_path / "killed"
    overrides = [*TINY, *SCHEDULE, f"output_dir={killed}", f"tracking.tracking_uri={sqlite_uri(tmp_path)}",
                 f"hydra.run.dir={tmp_path / 'hydra'}"]
    kill_when("mjexp.train", overrides, tmp_path, lambda: max(journal_steps(killed, "train/loss"), default=-1) >= 4)
    assert not (killed / "export").exists()
    checkpoints = sorted(p.name for p in (killed / "checkpoints").glob("step=*.ckpt"))
    assert checkpoints and "step=000009.ckpt" not in checkpoints
    run_id = json.loads((killed / "run.json").read_text())["mlflow_run_id"]

    train(killed, *SCHEDULE, "ckpt_path=last")

    # Weights: raw and EMA as the uninterrupted run's.
    for weights in ("raw", "ema"):
        resumed = load_file(str(killed / "export" / f"{weights}.safetensors"))
        expected = load_file(str(reference / "export" / f"{weights}.safetensors"))
        assert max_abs_difference(resumed, expected) <= 1e-6, weights

    # Everything else a checkpoint carries, compared at the final checkpoint.
    ours = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    theirs = torch.load(reference / "checkpoints" / "last.ckpt", weights_only=True)
    assert ours["global_step"] == theirs["global_step"] == STEPS
    assert ours["state_dict"]["ema_unet.num_updates"] == theirs["state_dict"]["ema_unet.num_updates"] == STEPS
    assert ours["lr_schedulers"] == theirs["lr_schedulers"]
    for mine, other in zip(ours["optimizer_states"][0]["state"].values(), theirs["optimizer_states"][0]["state"].values()):
        assert torch.equal(mine["step"], other["step"])
        assert torch.equal(mine["exp_avg"], other["exp_avg"]) and torch.equal(mine["exp_avg_sq"], other["exp_avg_sq"])
    assert torch.equal(ours["mjexp_rng"]["torch"], theirs["mjexp_rng"]["torch"])
    assert ours["loops"]["fit_loop"]["state_dict"]["combined_loader"] == theirs["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert ours["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 2, "batches_done": 1}]

    # MLflow: the same run continues, with every step logged and replayed steps logged identically.
    assert json.loads((killed / "run.json").read_text())["mlflow_run_id"] == run_id
    client = MlflowClient(sqlite_uri(tmp_path))
    assert client.get_run(run_id).info.status == "FINISHED"
    resumed_history = client.get_metric_history(run_id, "train/loss")
    reference_id = json.loads((reference / "run.json").read_text())["mlflow_run_id"]
    expected_loss = {m.step: m.value for m in client.get_metric_history(reference_id, "train/loss")}
    assert {m.step for m in resumed_history} == set(expected_loss) == set(range(STEPS))
    for metric in resumed_history:
        assert abs(metric.value - expected_loss[metric.step]) <= 1e-6, metric
