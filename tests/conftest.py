"""Shared test setup: quiet third-party logs, one thread per worker, no network; one trained
tiny model per session (``trained``)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

# Two pytest-xdist workers share two cores; more threads per worker only thrash.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# Nothing in the tests may reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

import torch  # noqa: E402

torch.set_num_threads(1)


import pytest  # noqa: E402
from filelock import FileLock  # noqa: E402


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Output folder of one finished tiny training (export/, checkpoints/), shared by all workers."""
    from reliability_helpers import train  # tests/reliability is on the path (pyproject's pythonpath)

    session_root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker has its own basetemp under the session's
        session_root = session_root.parent
    shared = session_root / "reliability-trained"
    shared.mkdir(exist_ok=True)
    out = shared / "run"
    with FileLock(str(shared / ".lock")), contextlib.chdir(shared):
        if not (out / "export" / "ema.safetensors").is_file():
            train(out)
    yield out
