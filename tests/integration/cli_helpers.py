"""Running the real command-line entry points in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_cli(module: str, *overrides: str, cwd: Path, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m <module> <overrides>`` in ``cwd`` (where mlflow.db and outputs/ land)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", module, *overrides], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{module} {' '.join(overrides)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    return done


def only_output_dir(root: Path) -> Path:
    """The single run folder under ``root/outputs/<name>/``."""
    runs = sorted(p for p in (root / "outputs").glob("*/*") if p.is_dir())
    assert len(runs) == 1, runs
    return runs[0]


# Shrinks a training to seconds without the debug overlay's evaluation settings.
TINY_TRAINING = (
    "data.resolution=16", "data.batch_size=16",
    "unet.channels=16", "unet.head_dim=16", "unet.groups=4",
    "trainer.val_check_interval=10", "trainer.checkpoint_every_n_steps=10", "trainer.log_every_n_steps=5",
    "trainer.enable_progress_bar=false", "trainer.limit_val_batches=1", "optim.warmup_steps=2", "evaluate=false",
)
