"""A multirun in which jobs fail: the others still run, failures are logged, summarised, exit != 0."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from sweeps_helpers import TINY_EVAL, cache_overrides, describe, job_records, run_multirun, runs_by_kind  # noqa: F401


def test_failed_jobs_do_not_stop_the_sweep_and_are_reported(tmp_path: Path, cache_overrides: tuple[str, ...]) -> None:
    # Job 0 has an invalid config (a user error, raised before its training opens an MLflow run;
    # outside a multirun it would end the process), job 1 diverges mid-training, job 2 is fine.
    done = run_multirun(*TINY_EVAL, *cache_overrides, "optim.lr=-1,1e30,0.001", cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0, describe(done)

    assert "1 of 3 jobs succeeded, 2 failed" in output, describe(done)
    summary = output[output.index("Sweep summary"):]
    assert "#0" in summary and "optim.lr must be > 0, got -1.0" in summary
    assert "#1" in summary and "NonFiniteLossError" in summary
    assert "#2" not in summary

    records = job_records(tmp_path)
    assert [r["status"] for r in records] == ["FAILED", "FAILED", "COMPLETED"]
    ok = Path(records[2]["output_dir"])
    assert (ok / "export" / "ema.safetensors").is_file() and (ok / "eval" / "report.json").is_file()

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parents, children = runs_by_kind(client, "default")
    by_lr = {r.data.tags["override.optim.lr"]: r for r in parents}
    assert sorted(by_lr) == ["-1", "0.001", "1e+30"]
    assert by_lr["0.001"].info.status == "FINISHED"
    assert [c.data.tags["mlflow.parentRunId"] for c in children] == [by_lr["0.001"].info.run_id]
    for lr, expected in (("1e+30", "NonFiniteLossError"), ("-1", "optim.lr must be > 0, got -1.0")):
        run = by_lr[lr]
        assert run.info.status == "FAILED" and expected in run.data.tags["error"]
        assert run.info.run_id == records[1 if lr == "1e+30" else 0]["mlflow_run_id"]
