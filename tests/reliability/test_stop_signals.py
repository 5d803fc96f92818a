"""SIGTERM, SIGINT and SLURM's warning signal sent to real training, sampling and scoring processes.

Training writes a checkpoint at the step it stopped at, the run is marked KILLED with the signal as
its error, the process exits 128 + signal within 30 s, and a resume ends with the weights of an
uninterrupted run and clears the error. Generation stops after the batch being written, keeping
its images. (The SIGKILL story is test_resume_after_kill.py's.)
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image
from safetensors.torch import load_file

from reliability_helpers import TINY, cli_args, cli_env, journal_steps, run_cli, signal_when, sqlite_uri, train
from mjexp.runs.resume import stored_step

# Long enough that the signal lands mid-training; no periodic checkpoint, so the one written is the
# stop's. A resume may change both (resume.RESUMABLE_CHANGES): it trains to the `trained` fixture's
# 4 steps (or further when the stop came later), the reference it is compared with.
LONG = ("trainer.max_steps=40", "trainer.checkpoint_every_n_steps=1000")
SECONDS_TO_STOP = 30


def journal_events(out: Path, kind: str) -> list[dict]:
    lines = (out / "tracking_journal.jsonl").read_text().splitlines()
    return [event for event in map(json.loads, lines) if event["event"] == kind]


def start_training(tmp_path: Path, signum: int, *extra: str, env: dict[str, str] | None = None):
    """A tiny training in a subprocess, sent ``signum`` once step 1 is in its journal."""
    out = tmp_path / "run"
    overrides = [*TINY, *LONG, f"hydra.run.dir={out}", f"tracking.tracking_uri={sqlite_uri(tmp_path)}", *extra]
    ready = lambda: max(journal_steps(out, "train/loss"), default=-1) >= 1  # noqa: E731
    return out, signal_when("mjexp.train", overrides, tmp_path, ready, signum, env=env)


def assert_stopped_with_a_checkpoint(out: Path, stopped, signum: int) -> int:
    """Exit 128 + signal within the limit, a checkpoint at the stop step, the run KILLED; the step."""
    assert stopped.returncode == 128 + signum, stopped.output[-3000:]
    assert stopped.seconds < SECONDS_TO_STOP
    name = signal.Signals(signum).name
    assert f"stopped by {name} at step" in stopped.output
    step = stored_step(out / "checkpoints" / "last.ckpt")
    assert step >= 2 and (out / "checkpoints" / f"step={step:06d}.ckpt").is_file()
    assert max(journal_steps(out, "train/loss")) == step - 1  # nothing trained after the checkpoint
    assert not (out / "export").exists()
    run_id = json.loads((out / "run.json").read_text())["mlflow_run_id"]
    run = MlflowClient(sqlite_uri(out.parent)).get_run(run_id)
    assert run.info.status == "KILLED"
    assert f"Interrupted: stopped by {name} at step {step}" in run.data.tags["error"]
    return step


def resume_matches_an_uninterrupted_run(out: Path, stopped_at: int, trained: Path, tmp_path: Path) -> None:
    """Resumed in-process to the reference's length: the same weights and losses; the same MLflow
    run FINISHED, its error tag cleared."""
    steps = max(stopped_at, 4)
    reference = trained
    if steps != 4:
        reference = tmp_path / "reference"
        train(reference, f"trainer.max_steps={steps}")
    train(out, "ckpt_path=last", f"trainer.max_steps={steps}")
    for weights in ("raw", "ema"):
        resumed = load_file(str(out / "export" / f"{weights}.safetensors"))
        expected = load_file(str(reference / "export" / f"{weights}.safetensors"))
        assert resumed.keys() == expected.keys()
        assert all(torch.equal(resumed[k], expected[k]) for k in expected), weights
    run_id = json.loads((out / "run.json").read_text())["mlflow_run_id"]
    client = MlflowClient(sqlite_uri(out.parent))
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["error"] == ""
    assert {m.step for m in client.get_metric_history(run_id, "train/loss")} == set(range(steps))


@pytest.mark.parametrize("signum", [
    pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT", marks=pytest.mark.slow),
])
def test_stop_signal_during_training_checkpoints_and_resumes_exactly(
    trained: Path, tmp_path: Path, signum: int
) -> None:
    out, stopped = start_training(tmp_path, signum)
    step = assert_stopped_with_a_checkpoint(out, stopped, signum)
    [finish] = journal_events(out, "finish")
    assert finish["status"] == "KILLED"  # in the journal too: a sync would send it
    resume_matches_an_uninterrupted_run(out, step, trained, tmp_path)


@pytest.mark.slow
def test_slurm_warning_signal_checkpoints_requeues_and_the_requeued_job_resumes(trained: Path, tmp_path: Path) -> None:
    """SIGUSR1 (``sbatch --signal=USR1@90``; submitit's SIGUSR2 takes the same path) in a SLURM job:
    a checkpoint, then ``scontrol requeue <job id>`` (a stand-in on PATH records the call). The
    requeued job runs the same command again, with SLURM_RESTART_COUNT=1, and resumes by itself."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol-calls.txt"
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_PROCID": "0", "PATH": f"{bin_dir}:{cli_env()['PATH']}"}
    out, stopped = start_training(tmp_path, signal.SIGUSR1, env=slurm)
    step = assert_stopped_with_a_checkpoint(out, stopped, signal.SIGUSR1)
    assert calls.read_text() == "requeue 4242\n"
    assert "requeued SLURM job 4242" in stopped.output

    steps = max(step, 4)  # the requeued job trains to the reference's length
    requeued = subprocess.run(
        cli_args("mjexp.train", *TINY, f"trainer.max_steps={steps}", "trainer.checkpoint_every_n_steps=1000",
                 f"hydra.run.dir={out}", f"tracking.tracking_uri={sqlite_uri(tmp_path)}"),
        cwd=tmp_path, env={**cli_env(), **slurm, "SLURM_RESTART_COUNT": "1"}, capture_output=True, text=True,
        timeout=300,
    )
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert f"Resuming from {out / 'checkpoints' / 'last.ckpt'}" in requeued.stdout
    reference = trained
    if steps != 4:
        reference = tmp_path / "reference"
        train(reference, f"trainer.max_steps={steps}")
    for weights in ("raw", "ema"):
        resumed = load_file(str(out / "export" / f"{weights}.safetensors"))
        expected = load_file(str(reference / "export" / f"{weights}.safetensors"))
        assert all(torch.equal(resumed[k], expected[k]) for k in expected), weights


def sample_overrides(trained: Path, out: Path, prompts: Path) -> list[str]:
    return [f"ckpt={trained / 'export'}", f"prompts={prompts}", "n=1", "batch_size=4", "sampler.steps=20",
            f"hydra.run.dir={out}"]


@pytest.mark.slow
def test_sigterm_during_sampling_stops_after_the_batch_and_keeps_its_images(trained: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"a red circle number {i}\n" for i in range(400)))
    out = tmp_path / "samples"
    rows = lambda: (out / "manifest.jsonl").read_text().splitlines() if (out / "manifest.jsonl").exists() else []  # noqa: E731
    stopped = signal_when("mjexp.sample", sample_overrides(trained, out, prompts), tmp_path, lambda: len(rows()) >= 4,
                          signal.SIGTERM)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.output[-3000:]
    assert stopped.seconds < SECONDS_TO_STOP
    kept = rows()
    assert 4 <= len(kept) < 400 and len(kept) % 4 == 0  # whole batches, then it stopped
    assert "stopped by SIGTERM with" in stopped.output and "rerun into the same output folder" in stopped.output
    first = json.loads(kept[0])["file"]
    before = (out / first).read_bytes()

    done = run_cli("mjexp.sample", *sample_overrides(trained, out, prompts), cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    final = [json.loads(line) for line in rows()]
    assert sorted((r["prompt_index"], r["sample_index"]) for r in final) == [(i, 0) for i in range(400)]
    assert (out / first).read_bytes() == before  # the finished images were kept, not made again


@pytest.mark.slow
def test_sigterm_while_judging_marks_the_run_killed(tmp_path: Path) -> None:
    """``mjexp.eval images=DIR`` trains its judge, then scores: nothing there to checkpoint, so the
    signal stops it at once (exit 143), the MLflow run KILLED with the signal as its error."""
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for i in range(16):
        Image.new("RGB", (16, 16), (255 * (i % 2), 0, 0)).save(images / f"{i}.png")
        rows.append(json.dumps({"file_name": f"{i}.png", "text": "a red circle"}))
    (images / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    out = tmp_path / "eval"
    overrides = [f"images={images}", "data.test_size=16", "data.judge_size=16", "eval.judge.steps=2000",
                 "eval.judge.width=16", "eval.judge.embed_dim=8", f"hydra.run.dir={out}",
                 f"tracking.tracking_uri={sqlite_uri(tmp_path)}"]
    stopped = signal_when("mjexp.eval", overrides, tmp_path, lambda: (out / "run.json").exists(), signal.SIGTERM)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.output[-3000:]
    assert stopped.seconds < SECONDS_TO_STOP
    run_id = json.loads((out / "run.json").read_text())["mlflow_run_id"]
    run = MlflowClient(sqlite_uri(tmp_path)).get_run(run_id)
    assert run.info.status == "KILLED" and "stopped by SIGTERM" in run.data.tags["error"]
