"""Fixtures of the reliability tests: a folder per test and one trained model per session."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import pytest
from filelock import FileLock

from reliability_helpers import train


@pytest.fixture(autouse=True)
def in_test_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test in its own folder: relative paths (MLflow's default ``./mlruns`` artifact
    root of a SQLite store, the ``.cache/`` folders) then never land in the repository."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Output folder of one finished tiny training (export/, checkpoints/), shared by all workers."""
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
