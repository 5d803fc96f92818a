"""MLflow unreachable at start or gone mid-run: training finishes, the failure is reported once,
the metrics stay in the run's journal, and `python -m mjexp.tracking.sync OUTPUT_DIR` sends them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from pathlib import Path
from typing import Iterator

import pytest
from mlflow.tracking import MlflowClient

from reliability_helpers import cli_env, journal_steps, run_cli, sqlite_uri, train
from mjexp.tracking import mlflow as tracking
from mjexp.tracking.sync import sync

STEPS = 4


def tracking_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "MLflow tracking failed" in str(w.message)]


def free_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def journal_metric_steps(out: Path, metric: str) -> list[int]:
    events = [json.loads(line) for line in (out / "tracking_journal.jsonl").read_text().splitlines()]
    return sorted(e["step"] for e in events if e["event"] == "metrics" and metric in e["metrics"])


def test_server_unreachable_at_start(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(out, tracking_uri=f"http://127.0.0.1:{free_port()}")
    [message] = tracking_warnings(caught)
    assert f"python -m mjexp.tracking.sync {out}" in message
    assert (out / "export" / "ema.safetensors").is_file()
    assert journal_metric_steps(out, "train/loss") == list(range(STEPS))
    assert json.loads((out / "run.json").read_text())["mlflow_run_id"] is None

    store = sqlite_uri(tmp_path / "store")
    done = run_cli("mjexp.tracking.sync", str(out), "--tracking-uri", store, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    client = MlflowClient(store)
    [run] = client.search_runs([client.get_experiment_by_name("default").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["unet.channels"] == "16"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss")) == list(range(STEPS))


def test_server_gone_mid_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store stops answering after two metric batches, as a killed server would."""
    sent = []
    real_send = tracking.send_metrics

    def dies_after_two(*args, **kwargs):  # noqa: ANN002, ANN003
        if len(sent) >= 2:
            raise ConnectionError("Connection refused")
        sent.append(args)
        real_send(*args, **kwargs)

    monkeypatch.setattr(tracking, "send_metrics", dies_after_two)
    out = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(out)
    assert len(tracking_warnings(caught)) == 1
    assert (out / "export" / "ema.safetensors").is_file()
    assert journal_metric_steps(out, "train/loss") == list(range(STEPS))

    monkeypatch.setattr(tracking, "send_metrics", real_send)
    run_id = json.loads((out / "run.json").read_text())["mlflow_run_id"]
    client = MlflowClient(sqlite_uri(tmp_path))
    assert client.get_run(run_id).info.status == "RUNNING"  # the end never reached MLflow
    assert len(client.get_metric_history(run_id, "train/loss")) < STEPS

    assert sync(out) == {"parent": run_id}
    assert client.get_run(run_id).info.status == "FINISHED"  # the same run, completed
    assert sorted(m.step for m in client.get_metric_history(run_id, "train/loss")) == list(range(STEPS))
    sync(out)  # a second sync sends nothing twice
    assert sorted(m.step for m in client.get_metric_history(run_id, "train/loss")) == list(range(STEPS))


@contextlib.contextmanager
def mlflow_server(store: str, port: int, cwd: Path) -> Iterator[subprocess.Popen]:
    """``mlflow server`` as the docs start it (127.0.0.1), in its own process group."""
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    env = {**cli_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(cwd / f"server-{time.time_ns()}.log", "w") as log:
        server = subprocess.Popen(
            [str(mlflow_cli), "server", "--backend-store-uri", store, "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"],
            cwd=cwd, env=env, stdout=log, stderr=log, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                    break
                except OSError:
                    assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
                    time.sleep(0.25)
            yield server
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses (hex, as in /proc/net/tcp) with a socket listening on ``port``."""
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return {row[1].split(":")[0] for row in rows if int(row[1].split(":")[1], 16) == port and row[3] == "0A"}


@pytest.mark.slow
def test_real_server_killed_mid_run_then_synced(tmp_path: Path) -> None:
    """A real `mlflow server` (bound to 127.0.0.1 only) is SIGKILLed during training, restarted, synced."""
    store, port, out = sqlite_uri(tmp_path / "server"), free_port(), tmp_path / "run"
    uri = f"http://127.0.0.1:{port}"
    with mlflow_server(store, port, tmp_path) as server:
        assert listening_addresses(port) == {"0100007F"}

        def kill_server_after_the_first_step() -> None:
            while not journal_steps(out, "train/loss") and server.poll() is None:
                time.sleep(0.01)
            os.killpg(server.pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_server_after_the_first_step, daemon=True)
        killer.start()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train(out, "trainer.max_steps=8", tracking_uri=uri)
        killer.join()
    assert len(tracking_warnings(caught)) == 1
    assert journal_metric_steps(out, "train/loss") == list(range(8))
    run_id = json.loads((out / "run.json").read_text())["mlflow_run_id"]
    assert run_id is not None

    with mlflow_server(store, port, tmp_path):
        done = run_cli("mjexp.tracking.sync", str(out), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        client = MlflowClient(uri)
        assert client.get_run(run_id).info.status == "FINISHED"
        assert sorted(m.step for m in client.get_metric_history(run_id, "train/loss")) == list(range(8))
