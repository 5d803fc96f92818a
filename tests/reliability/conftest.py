"""Fixtures of the reliability tests: a folder per test (the trained model: tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def in_test_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test in its own folder: relative paths (MLflow's default ``./mlruns`` artifact
    root of a SQLite store, the ``.cache/`` folders) then never land in the repository."""
    monkeypatch.chdir(tmp_path)
