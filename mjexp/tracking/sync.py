"""Replay a run's tracking journal into MLflow: ``python -m mjexp.tracking.sync OUTPUT_DIR``.

Use it after a run whose tracking server was unreachable or died: every event the run journaled
but MLflow never acknowledged is sent now, in order, and acknowledged in the journal, so running
the command twice sends nothing twice.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mjexp.tracking.journal import JOURNAL_NAME, Journal
from mjexp.tracking.mlflow import (
    configure_sqlite_busy_timeout,
    get_or_create_experiment,
    send_artifact,
    send_metrics,
    send_params,
    send_tags,
    store_lock,
)


def sync(output_dir: str | Path, tracking_uri: str | None = None) -> dict[str, str]:
    """Send unacknowledged events; returns {journal run key: MLflow run id}."""
    from mlflow.tracking import MlflowClient

    path = Path(output_dir)
    journal = Journal(path / JOURNAL_NAME if path.is_dir() else path)
    events = list(journal.events())
    if not events:
        raise FileNotFoundError(f"no tracking journal with events at {journal.path}")
    # With another store as target, everything is sent there, acknowledged or not.
    acked = set() if tracking_uri else {e["acks"] for e in events if e["event"] == "ack"}
    run_ids = {} if tracking_uri else {e["run"]: e["mlflow_run_id"] for e in events if e["event"] == "run_id"}
    clients: dict[str, Any] = {}

    def client_for(uri: str) -> Any:
        if uri not in clients:
            configure_sqlite_busy_timeout()
            with store_lock(uri):
                clients[uri] = MlflowClient(tracking_uri=uri)
        return clients[uri]

    run_uris: dict[str, str] = {}
    for event in events:
        key, kind = event["run"], event["event"]
        if kind == "run_start":
            uri = tracking_uri or event["tracking_uri"]
            run_uris[key] = uri
            if key in run_ids:
                continue
            client = client_for(uri)
            tags = dict(event.get("tags") or {})
            if event.get("parent"):
                tags["mlflow.parentRunId"] = run_ids[event["parent"]]
            experiment_id = get_or_create_experiment(client, event["experiment"])
            run = client.create_run(experiment_id, run_name=event["run_name"], tags=tags)
            run_ids[key] = run.info.run_id
            journal.record("run_id", key, mlflow_run_id=run.info.run_id, experiment_id=experiment_id)
            continue
        if "seq" not in event or kind in ("run_id", "ack") or event["seq"] in acked:
            continue
        client, run_id = client_for(run_uris[key]), run_ids[key]
        if kind == "params":
            send_params(client, run_id, event["params"])
        elif kind == "metrics":
            send_metrics(client, run_id, event["metrics"], event.get("step"), event["timestamp_ms"])
        elif kind == "tags":
            send_tags(client, run_id, event["tags"])
        elif kind == "artifact":
            send_artifact(client, run_id, event["path"], event.get("artifact_path"))
        elif kind == "finish":
            client.set_terminated(run_id, status=event["status"])
        journal.record("ack", key, acks=event["seq"])
    return run_ids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", help="a run's output folder (or its tracking_journal.jsonl)")
    parser.add_argument("--tracking-uri", help="send to this store instead of the one the run used")
    args = parser.parse_args(argv)
    run_ids = sync(args.output_dir, args.tracking_uri)
    for key, run_id in run_ids.items():
        print(f"{key}: MLflow run {run_id}")


if __name__ == "__main__":
    main()
