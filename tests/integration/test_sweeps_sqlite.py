"""Parallel jobs on one fresh local SQLite MLflow store: no lock errors, no migration races, no lost runs."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from sweeps.compare import compare
from sweeps_helpers import (  # noqa: F401
    REPO,
    cache_overrides,
    assert_journal_acknowledged,
    describe,
    job_records,
    run_multirun,
    runs_by_kind,
)

# One process of the race: wait for a common start time, then open a run on the (fresh) store
# and log into it as a training does (params, many metric batches, a nested run).
TRACKER_JOB = """
import sys, time, warnings
from pathlib import Path
from mjexp.tracking.journal import Journal
from mjexp.tracking.mlflow import Tracker
uri, out, start = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    tracker = Tracker(uri, "race", out.name, Journal(out / "tracking_journal.jsonl"))
    tracker.log_params({"job": out.name})
    for step in range(30):
        tracker.log_metrics({"train/loss": 1.0 / (step + 1)}, step)
    child = tracker.child("setting")
    child.log_metrics({"fid/judge": 1.0})
    child.finish()
    tracker.finish()
problems = [str(w.message) for w in caught if "MLflow tracking failed" in str(w.message)]
sys.exit("; ".join(problems) if problems else 0)
"""


def test_simultaneous_trackers_on_a_fresh_store(tmp_path: Path) -> None:
    """Four processes creating the store at the same instant: Alembic migrations would race
    without the store lock; concurrent writes would hit "database is locked" without the busy
    timeout. Every run must arrive complete."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    start = time.time() + 6  # after every interpreter has imported mlflow
    jobs = [
        subprocess.Popen(
            [sys.executable, "-c", TRACKER_JOB, uri, str(tmp_path / f"job{i}"), str(start)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(4)
    ]
    results = [job.communicate(timeout=180) for job in jobs]
    for job, (_, err) in zip(jobs, results):
        assert job.returncode == 0, err[-3000:]

    client = MlflowClient(uri)
    parents, children = runs_by_kind(client, "race")
    assert sorted(r.data.params["job"] for r in parents) == ["job0", "job1", "job2", "job3"]
    assert all(r.info.status == "FINISHED" for r in parents + children) and len(children) == 4
    for run in parents:
        assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 30
    for i in range(4):
        assert_journal_acknowledged(tmp_path / f"job{i}")


def test_parallel_default_jobs_then_compare(tmp_path: Path, cache_overrides: tuple[str, ...]) -> None:
    """A researcher's first sweep with the default settings: ``debug=tiny``, an eval grid of two
    guidance scales and two schedules as two trainings at once (joblib) on a store neither has
    created yet, then ``sweeps.compare``. The default prompt set (auto) once left every run RUNNING
    (its resolved name was logged over the config's "auto"), so compare found no arms."""
    done = run_multirun(
        "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2",
        "debug=tiny", "eval.grid.guidance.scale=[1.0,3.0]", "schedule=linear,cosine",
        *cache_overrides, cwd=tmp_path,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, describe(done)
    assert "2 of 2 jobs succeeded" in output
    for symptom in ("database is locked", "MLflow tracking failed", "MLflow refused", "alembic"):
        assert symptom not in output, describe(done)

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parents, children = runs_by_kind(client, "default")
    assert sorted(r.data.params["schedule.kind"] for r in parents) == ["cosine", "linear"]
    assert all(r.info.status == "FINISHED" for r in parents + children) and len(children) == 4
    assert {(r.data.params["eval.prompt_set"], r.data.params["prompts.set"]) for r in parents} == {("auto", "shapes_single_v1")}
    for record in job_records(tmp_path):
        assert_journal_acknowledged(Path(record["output_dir"]))

    result = compare("default", f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "cmp")
    assert result.varying == ["schedule", "guidance.scale"] and not result.failed
    assert len(result.arms) == 4 and all(a.single_seed for a in result.arms)
    with open(tmp_path / "cmp" / "comparison.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(float(r["fid/judge:se_boot"]) > 0 and r["fid/judge:se_seeds"] == "nan" for r in rows)
    assert "single seed" in (tmp_path / "cmp" / "comparison.md").read_text()
    assert (tmp_path / "cmp" / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
