"""Helpers for the reliability tests: tiny configs, in-process trainings, CLI subprocesses.

Trainings run in-process through :func:`mjexp.runs.train_run.run_training` unless the process boundary
is the point of the test (SIGKILL, exit status, stderr). (A module of its own, not the conftest:
every test folder has a ``conftest`` module, so ``from conftest import`` would be ambiguous.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[2]

# debug=tiny with the smallest trainable text encoder: 4 steps, checkpoints every 2, no evaluation.
TINY = (
    "debug=tiny",
    "text_encoder=tiny",
    "text_encoder.width=16",
    "text_encoder.heads=2",
    "evaluate=false",
)


def sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def train_config(out: Path, *overrides: str, tracking_uri: str | None = None) -> DictConfig:
    """The composed ``mjexp.train`` config of a tiny run writing to ``out`` (MLflow next to it)."""
    from mjexp.config import register_configs

    register_configs()
    uri = tracking_uri or sqlite_uri(out.parent)
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=[*TINY, f"output_dir={out}", f"tracking.tracking_uri={uri}", *overrides])


def train(out: Path, *overrides: str, tracking_uri: str | None = None) -> dict[str, float]:
    """Run a tiny training in this process."""
    from mjexp.runs.train_run import run_training

    return run_training(train_config(out, *overrides, tracking_uri=tracking_uri))


def cli_args(module: str, *overrides: str) -> list[str]:
    return [sys.executable, "-m", module, *overrides]


def cli_env() -> dict[str, str]:
    """This process's environment, with its torch thread count: float sums (and so the weights
    of a subprocess training) depend on how many threads split them."""
    import torch

    env = {k: v for k, v in os.environ.items() if k != "MJEXP_DEBUG"}
    python_path = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return {**env, "PYTHONPATH": python_path, "OMP_NUM_THREADS": str(torch.get_num_threads())}


def run_cli(module: str, *overrides: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m <module> <overrides>`` in ``cwd``; the caller checks the outcome."""
    return subprocess.run(
        cli_args(module, *overrides), cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )


@dataclass
class Signalled:
    """How a process sent a signal ended: exit status, output, seconds from the signal to the end."""

    returncode: int
    output: str
    seconds: float


def kill_when(module: str, overrides: list[str], cwd: Path, ready: Callable[[], bool], timeout: float = 300) -> Signalled:
    """Start ``python -m module``, SIGKILL it as soon as ``ready()`` is true; fail if it ends first."""
    done = signal_when(module, overrides, cwd, ready, signal.SIGKILL, timeout=timeout)
    assert done.returncode == -signal.SIGKILL
    return done


def signal_when(
    module: str,
    overrides: list[str],
    cwd: Path,
    ready: Callable[[], bool],
    signum: int,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> Signalled:
    """Start ``python -m module``, send it ``signum`` as soon as ``ready()`` is true and wait for it
    to end; fail if it ends first. ``env`` adds to the environment."""
    log = cwd / f"{module}.{time.time_ns()}.log"
    with open(log, "w") as sink:
        process = subprocess.Popen(
            cli_args(module, *overrides), cwd=cwd, env={**cli_env(), **(env or {})}, stdout=sink, stderr=sink
        )
        deadline = time.monotonic() + timeout
        try:
            while not ready():
                if process.poll() is not None:
                    raise AssertionError(f"{module} ended (exit {process.returncode}) before it could be signalled:\n{log.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"{module} did not reach the signal point in {timeout} s:\n{log.read_text()[-3000:]}")
                time.sleep(0.005)
            process.send_signal(signum)
            sent = time.monotonic()
            process.wait(timeout=timeout)
            seconds = time.monotonic() - sent
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
    return Signalled(process.returncode, log.read_text(), seconds)


def journal_steps(out: Path, metric: str) -> list[int]:
    """Steps at which ``metric`` reached the run's tracking journal (complete lines only)."""
    journal = out / "tracking_journal.jsonl"
    if not journal.exists():
        return []
    steps = []
    for line in journal.read_text().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written right now
        if event["event"] == "metrics" and metric in event["metrics"]:
            steps.append(event["step"])
    return steps


class FloatImageSaver(L.Callback):
    """Saves each predicted batch's float images (in [-1, 1], before PNG rounding) per item.

    Lives in an importable module so DDP-spawned processes can unpickle it.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
        self.folder.mkdir(parents=True, exist_ok=True)
        for image, i, j in zip(outputs["images"], outputs["prompt_index"].tolist(), outputs["sample_index"].tolist()):
            save_file({"image": image.contiguous().cpu()}, self.folder / f"{i}_{j}.safetensors")


def float_images(folder: Path) -> dict[str, torch.Tensor]:
    return {p.stem: load_file(p)["image"] for p in sorted(folder.glob("*.safetensors"))}
