"""A resume continues its own run: its own folder, the newest valid checkpoint, the same config;
and one live run per output folder."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from reliability_helpers import TINY, cli_env, journal_steps, kill_when, run_cli, sqlite_uri, train
from mjexp.files import checkpoints as checkpoint_io
from mjexp.files.checkpoints import CheckpointError
from mjexp.runs.resume import newest_checkpoint, remove_debris, stored_step
from mjexp.files.lock import RunFolderInUse, run_folder_lock


def copied_run(trained: Path, run: Path) -> Path:
    """The trained run's checkpoints and run.json in a folder of this test's own."""
    shutil.copytree(trained / "checkpoints", run / "checkpoints")
    shutil.copy(trained / "run.json", run / "run.json")
    return run


def test_a_checkpoint_of_another_config_is_refused_naming_each_key(trained: Path, tmp_path: Path) -> None:
    run = copied_run(trained, tmp_path / "outputs" / "earlier")
    # The newest run of the experiment (ckpt_path=last from a new folder), and the folder itself.
    for out in (tmp_path / "outputs" / "new", run):
        with pytest.raises(CheckpointError) as error:
            train(out, "ckpt_path=last", "seed=1", "optim.lr=0.002", "trainer.max_steps=6")
        message = str(error.value)
        assert f"checkpoint {run / 'checkpoints' / 'last.ckpt'} belongs to a run with another config" in message
        assert "optim.lr: checkpoint 0.001 vs requested 0.002; seed: checkpoint 0 vs requested 1)" in message
    assert stored_step(run / "checkpoints" / "last.ckpt") == 4  # untouched


def test_a_new_run_refuses_a_folder_holding_checkpoints(trained: Path, tmp_path: Path) -> None:
    run = copied_run(trained, tmp_path / "run")
    with pytest.raises(CheckpointError, match=rf"{run} already holds checkpoints of a run: continue it with ckpt_path=last"):
        train(run)


def test_a_second_live_run_in_a_folder_is_refused_naming_the_first(tmp_path: Path) -> None:
    """A process holds the folder (as a live training does); a training into it refuses, naming it.
    Killed, it leaves no stale lock."""
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from mjexp.files.lock import run_folder_lock\n"
         f"with run_folder_lock(__import__('pathlib').Path({str(folder)!r})):\n print('held', flush=True); time.sleep(600)"],
        env=cli_env(), stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderInUse, match=rf"{folder} is in use by a live run \(pid {holder.pid} on .*, started "):
            train(folder)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with run_folder_lock(folder):  # free again
        pass
    assert not (folder / "checkpoints").exists() and not (folder / "run.json").exists()


def test_leftovers_of_killed_saves_are_removed_and_the_newest_step_wins(trained: Path, tmp_path: Path) -> None:
    """A kill between ``step=000004.ckpt`` and ``last.ckpt`` (``last`` still at step 2), the temp file
    of a save cut short, and the ``-v1`` copies older versions made of taken names."""
    folder = copied_run(trained, tmp_path / "run") / "checkpoints"
    shutil.copy(folder / "step=000002.ckpt", folder / "last.ckpt")
    shutil.copy(folder / "step=000004.ckpt", folder / "step=000004-v1.ckpt")
    shutil.copy(folder / "step=000002.ckpt", folder / "last-v1.ckpt")
    (folder / ".last.ckpt.abc123.tmp").write_bytes(b"PK\x03\x04 half a zip")
    (tmp_path / "run" / "export").mkdir()
    (tmp_path / "run" / "export" / ".ema.safetensors.x1.tmp").write_bytes(b"half")

    remove_debris(tmp_path / "run")
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt", "step=000002.ckpt", "step=000004.ckpt"]
    assert not list((tmp_path / "run" / "export").iterdir())
    path, checkpoint = newest_checkpoint(folder)
    assert path == folder / "step=000004.ckpt" and checkpoint["global_step"] == 4


def test_a_step_logged_after_its_checkpoint_is_not_lost_by_a_crash_in_between(tmp_path: Path, monkeypatch) -> None:
    """The process dies right after writing ``step=000004.ckpt``, before ``last.ckpt`` and before
    anything else is logged. The resume starts at step 4 (not 2: no step trained twice) and every
    step's train/loss reaches the journal exactly once."""
    real_save = checkpoint_io.SafeCheckpointIO.save_checkpoint

    def dies_after_step_4(self, checkpoint, path, storage_options=None):  # noqa: ANN001
        real_save(self, checkpoint, path, storage_options)
        if Path(path).name == "step=000004.ckpt":
            raise SystemExit("killed")

    out = tmp_path / "run"
    monkeypatch.setattr(checkpoint_io.SafeCheckpointIO, "save_checkpoint", dies_after_step_4)
    with pytest.raises(SystemExit):
        train(out, "trainer.max_steps=6", "tracking.enabled=false")  # the journal is written all the same
    monkeypatch.setattr(checkpoint_io.SafeCheckpointIO, "save_checkpoint", real_save)
    assert stored_step(out / "checkpoints" / "last.ckpt") == 2
    train(out, "trainer.max_steps=6", "tracking.enabled=false", "ckpt_path=last")
    assert sorted(journal_steps(out, "train/loss")) == list(range(6))


def job_config(folder: Path) -> dict:
    return yaml.safe_load((folder / "export" / "config.yaml").read_text())


@pytest.mark.slow
def test_a_sweep_job_resumes_only_its_own_checkpoint(tmp_path: Path) -> None:
    """The tester's case: ``-m seed=0,1``, killed once job 0 logged step 5, rerun with ckpt_path=last.
    Job 0 continues its own checkpoint; job 1, which never ran, trains from step 0 as seed 1."""
    sweep = tmp_path / "sweep"
    overrides = ["-m", "seed=0,1", *TINY, "trainer.max_steps=12", "trainer.checkpoint_every_n_steps=2",
                 f"hydra.sweep.dir={sweep}", f"tracking.tracking_uri={sqlite_uri(tmp_path)}"]
    kill_when("mjexp.train", overrides, tmp_path, lambda: max(journal_steps(sweep / "0", "train/loss"), default=-1) >= 5)
    assert not (sweep / "1").exists()

    done = run_cli("mjexp.train", *overrides, "ckpt_path=last", cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Resuming from {sweep / '0' / 'checkpoints'}" in done.stdout
    assert f"No checkpoint in {sweep / '1' / 'checkpoints'} yet: this job starts at step 0" in done.stdout
    assert "2 of 2 jobs succeeded" in done.stdout
    assert job_config(sweep / "0")["seed"] == 0 and job_config(sweep / "1")["seed"] == 1
    zero, one = (load_file(str(sweep / job / "export" / "raw.safetensors")) for job in "01")
    assert any(not torch.equal(zero[k], one[k]) for k in zero)  # seed 1 was trained, not copied
    assert sorted(journal_steps(sweep / "1", "train/loss")) == list(range(12))
    assert torch.load(sweep / "1" / "checkpoints" / "last.ckpt", weights_only=True)["mjexp_config"]["seed"] == 1
