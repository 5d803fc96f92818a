"""A real ``mlflow server`` (SQLite backend, local artifact root) that a two-job multirun logs to,
read back with MlflowClient and looked at in the MLflow UI through headless Chromium."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from mlflow.tracking import MlflowClient

from sweeps_helpers import (  # noqa: F401
    TINY_EVAL,
    assert_journal_acknowledged,
    cache_overrides,
    describe,
    job_records,
    run_multirun,
    runs_by_kind,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]
RUN_NAMES = {"eps seed=0", "v seed=0"}  # conf/experiment/param_ablation.yaml's tracking.run_name


def require_browser() -> None:
    """Chromium and Playwright, or a loud failure where ``make test`` promised them
    (``MJEXP_REQUIRE_BROWSER=1``), or a skip with the reason for everyone else."""
    missing = [] if CHROMIUM.exists() else [f"{CHROMIUM} (Debian package `chromium`; `make browser` installs it)"]
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the Python package `playwright` (dev extra: pip install -e '.[dev]')")
    if not missing:
        return
    message = "the MLflow UI browser test needs " + " and ".join(missing)
    if os.environ.get("MJEXP_REQUIRE_BROWSER") == "1":
        pytest.fail(message + "; MJEXP_REQUIRE_BROWSER=1 makes this an error (set it to 0 to skip)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 with a SQLite store and a served local artifact root."""
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination", str(tmp_path / "artifacts"),
        ],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None and time.time() < deadline, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(1)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_two_job_multirun_on_a_server_is_listed_in_the_ui(
    tmp_path: Path, mlflow_server: str, cache_overrides: tuple[str, ...]
) -> None:
    require_browser()
    work = tmp_path / "work"
    work.mkdir()
    done = run_multirun(
        "+experiment=param_ablation", "diffusion.parameterization=eps,v", *TINY_EVAL, *cache_overrides,
        f"tracking.tracking_uri={mlflow_server}", cwd=work,
    )
    assert done.returncode == 0, describe(done)
    assert not (work / "mlflow.db").exists()  # everything went to the server

    client = MlflowClient(mlflow_server)
    parents, children = runs_by_kind(client, "param_ablation")
    assert {r.info.run_name for r in parents} == RUN_NAMES
    assert all(r.info.status == "FINISHED" for r in parents + children) and len(children) == 2
    for run in parents:
        assert run.data.params["diffusion.parameterization"] == run.info.run_name.split()[0]
        assert {"train/loss", "val/loss"} <= set(run.data.metrics)
        top = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "export", "report"} <= top
        assert "export/ema.safetensors" in {a.path for a in client.list_artifacts(run.info.run_id, "export")}
    for child in children:
        assert "fid/judge" in child.data.metrics and "cost/nfe" in child.data.metrics
        assert [a.path for a in client.list_artifacts(child.info.run_id)] == ["grid.png"]
    for record in job_records(work):
        assert_journal_acknowledged(Path(record["output_dir"]))

    from playwright.sync_api import sync_playwright

    experiment_id = client.get_experiment_by_name("param_ablation").experiment_id
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        page = browser.new_page()
        try:
            # The runs table of the experiment page ("Model training" view rather than GenAI).
            page.goto(f"{mlflow_server}/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
            for name in sorted(RUN_NAMES):
                page.get_by_text(name, exact=True).first.wait_for(timeout=90_000)
        finally:
            page.screenshot(path=str(tmp_path / "mlflow-ui.png"))
            browser.close()
