"""Helpers for the sweep tests: real multiruns of ``python -m mjexp.train`` in a subprocess.

Imported explicitly (``from sweeps_helpers import ...``); not a conftest, so it cannot clash with
other helpers' fixtures. Every multirun runs in its own folder (its ``mlflow.db`` and
``multirun/`` land there) and shares the domain-CLIP, judge and reference-statistics caches of the
test session, so only the first run trains those.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]

# debug=tiny with the default prompt set, one cheap evaluated setting.
TINY_EVAL = ("debug=tiny", "sampler.steps=4", "eval.grid.guidance.scale=[3.0]")


@pytest.fixture(scope="session")
def cache_overrides(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    """Cache folders shared by every run of the session (and by the pytest-xdist workers)."""
    root = tmp_path_factory.getbasetemp().parent / "mjexp-sweeps-cache"
    return (
        f"text_encoder.cache_dir={root / 'domain_clip'}",
        f"eval.judge.cache_dir={root / 'judge'}",
        f"eval.cache_dir={root / 'evaluation'}",
    )


def run_multirun(*overrides: str, cwd: Path, timeout: float = 400) -> subprocess.CompletedProcess:
    """``python -m mjexp.train -m <overrides>`` in ``cwd``; returns the finished process (any status)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)  # test what a user sees
    return subprocess.run(
        [sys.executable, "-m", "mjexp.train", "-m", *overrides],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def describe(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\n--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-6000:]}"


def sweep_dir(cwd: Path) -> Path:
    """The one sweep folder under ``cwd/multirun/<name>/``."""
    found = [p.parent for p in cwd.glob("multirun/*/*/multirun.yaml")]
    assert len(found) == 1, found
    return found[0]


def job_records(cwd: Path) -> list[dict[str, Any]]:
    lines = (sweep_dir(cwd) / "jobs.jsonl").read_text().splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda r: r["num"])


def runs_by_kind(client: MlflowClient, experiment: str) -> tuple[list[Any], list[Any]]:
    """(training runs, nested setting runs) of an experiment."""
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment!r}"
    runs = client.search_runs([found.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def assert_journal_acknowledged(output_dir: Path) -> None:
    """Every event a job journaled was acknowledged by MLflow: nothing waits for a sync."""
    events = [json.loads(line) for line in (output_dir / "tracking_journal.jsonl").read_text().splitlines()]
    acked = {e["acks"] for e in events if e["event"] == "ack"}
    sent = [e for e in events if e["event"] not in ("ack", "run_id", "run_start")]
    missing = [e["event"] for e in sent if e["seq"] not in acked]
    assert sent and not missing, f"{output_dir}: unacknowledged events {missing}"
