"""Journaled MLflow tracking: normal logging, failure tolerance and replay with sync."""

import warnings
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mjexp.tracking.journal import Journal
from mjexp.tracking.mlflow import Tracker, flatten, resolve_tracking_uri
from mjexp.tracking.sync import sync


def make_tracker(tmp_path: Path, uri: str) -> Tracker:
    return Tracker(uri, "exp", "run", Journal(tmp_path / "out" / "tracking_journal.jsonl"))


def metric_history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key)]


def test_logs_params_metrics_artifacts_and_nested_runs(tmp_path: Path) -> None:
    uri = resolve_tracking_uri("sqlite:///store.db", tmp_path)
    tracker = make_tracker(tmp_path, uri)
    tracker.log_params({"optim": {"lr": 0.001}, "name": "x"})
    for step in range(3):
        tracker.log_metrics({"train/loss": 1.0 / (step + 1)}, step)
    (tmp_path / "grid.png").write_bytes(b"png")
    tracker.log_artifact(tmp_path / "grid.png", "grids")
    child = tracker.child("guidance=3")
    child.log_metrics({"fid/judge": 4.0})
    child.finish()
    tracker.finish()

    client = MlflowClient(uri)
    run = client.get_run(tracker.run_id)
    assert run.data.params == {"optim.lr": "0.001", "name": "x"} and run.info.status == "FINISHED"
    assert metric_history(uri, tracker.run_id, "train/loss") == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    assert [a.path for a in client.list_artifacts(tracker.run_id, "grids")] == ["grids/grid.png"]
    assert client.get_run(child.run_id).data.tags["mlflow.parentRunId"] == tracker.run_id
    assert (tmp_path / "store.db").exists()


def test_unreachable_server_warns_once_keeps_journal_and_syncs_later(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = make_tracker(tmp_path, "http://127.0.0.1:9")  # discard port: nothing listens
        tracker.log_params({"a": 1})
        tracker.log_metrics({"loss": 2.0}, step=7)
        tracker.child("setting").log_metrics({"fid": 1.5})
        tracker.finish()
    failures = [w for w in caught if "MLflow tracking failed" in str(w.message)]
    assert len(failures) == 1 and "mjexp.tracking.sync" in str(failures[0].message)
    assert tracker.run_id is None
    journal = tmp_path / "out" / "tracking_journal.jsonl"
    assert tracker.ui_hint == f"not reached; sync later with: python -m mjexp.tracking.sync {journal}"

    target = resolve_tracking_uri("sqlite:///later.db", tmp_path)
    run_ids = sync(tmp_path / "out", tracking_uri=target)
    client = MlflowClient(target)
    parent = client.get_run(run_ids["parent"])
    assert parent.data.params == {"a": "1"} and parent.info.status == "FINISHED"
    assert metric_history(target, run_ids["parent"], "loss") == [(7, 2.0)]
    assert metric_history(target, run_ids["parent/setting"], "fid") == [(0, 1.5)]


def test_failure_mid_run_is_replayed_without_duplicates(tmp_path: Path) -> None:
    uri = resolve_tracking_uri("sqlite:///store.db", tmp_path)
    tracker = make_tracker(tmp_path, uri)
    tracker.log_metrics({"loss": 1.0}, step=0)

    def broken(*args, **kwargs):
        raise ConnectionError("server went away")

    tracker.client.log_batch = broken  # the server dies mid-run
    with pytest.warns(UserWarning, match="MLflow tracking failed"):
        tracker.log_metrics({"loss": 0.5}, step=1)
    tracker.log_metrics({"loss": 0.25}, step=2)
    tracker.finish()  # the store answers again (a new client): the end of the run sends what it missed
    assert metric_history(uri, tracker.run_id, "loss") == [(0, 1.0), (1, 0.5), (2, 0.25)]
    assert MlflowClient(uri).get_run(tracker.run_id).info.status == "FINISHED"

    sync(tmp_path / "out")  # nothing is left, and nothing is sent twice
    assert metric_history(uri, tracker.run_id, "loss") == [(0, 1.0), (1, 0.5), (2, 0.25)]


def test_a_refused_entry_is_reported_and_tracking_goes_on(tmp_path: Path) -> None:
    """A store that answers "no" to one request (a param logged again with another value) is not
    an outage: the entry is named, marked refused, and the run still ends FINISHED with the rest."""
    uri = resolve_tracking_uri("sqlite:///store.db", tmp_path)
    tracker = make_tracker(tmp_path, uri)
    tracker.log_params({"eval": {"prompt_set": "auto"}})
    with pytest.warns(UserWarning, match="MLflow refused logging params"):
        tracker.log_params({"eval": {"prompt_set": "shapes_single_v1"}})
    tracker.log_metrics({"loss": 0.5}, step=3)
    child = tracker.child("setting")
    child.log_metrics({"fid": 1.5})
    child.finish()
    tracker.finish()

    client = MlflowClient(uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"eval.prompt_set": "auto"}
    assert metric_history(uri, tracker.run_id, "loss") == [(3, 0.5)]
    assert client.get_run(child.run_id).info.status == "FINISHED"
    events = list(Journal(tmp_path / "out" / "tracking_journal.jsonl").events())
    [refused] = [e for e in events if e["event"] == "refused"]
    assert "Changing param values is not allowed" in refused["reason"]
    assert sync(tmp_path / "out") == {"parent": tracker.run_id, "parent/setting": child.run_id}  # nothing to resend


def test_sync_names_and_skips_an_entry_the_store_refuses(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A journal written before refusals were marked (a params entry MLflow rejects, then the rest
    unsent): sync sends everything else, finishes the run and names the refused entry."""
    uri = resolve_tracking_uri("sqlite:///store.db", tmp_path)
    tracker = make_tracker(tmp_path, uri)
    tracker.log_params({"a": 1})
    journal = tracker.journal
    journal.record("params", "parent", params={"a": "2"})
    journal.record("metrics", "parent", metrics={"loss": 0.5}, step=1, timestamp_ms=0)
    journal.record("finish", "parent", status="FINISHED")

    assert sync(tmp_path / "out") == {"parent": tracker.run_id}
    err = capsys.readouterr().err
    assert "not sent, MLflow refused it: entry" in err and "params of run 'parent'" in err
    run = MlflowClient(uri).get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"a": "1"}
    assert metric_history(uri, tracker.run_id, "loss") == [(1, 0.5)]
    sync(tmp_path / "out")  # the refused entry is not tried again
    assert "refused" not in capsys.readouterr().err


def test_sync_cli_says_the_store_is_unreachable_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    from mjexp.tracking import sync as sync_cli

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_tracker(tmp_path, "http://127.0.0.1:9").log_params({"a": 1})
    with pytest.raises(SystemExit) as exit_info:
        sync_cli.main([str(tmp_path / "out")])
    assert str(exit_info.value).startswith("error: MLflow could not be reached") and "run the command again" in str(exit_info.value)


def test_relative_sqlite_uri_is_anchored_at_launch_dir(tmp_path: Path) -> None:
    assert resolve_tracking_uri(None, tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_tracking_uri("http://host:5000", tmp_path) == "http://host:5000"
    assert resolve_tracking_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"


def test_flatten_nested_config() -> None:
    assert flatten({"a": {"b": [1, 2], "c": {"d": None}}}) == {"a.b": "[1, 2]", "a.c.d": "None"}


def test_journal_tolerates_torn_last_line(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.record("metrics", "parent", metrics={"a": 1.0})
    with open(journal.path, "a") as f:
        f.write('{"event": "metr')  # the process died mid-write
    assert [e["event"] for e in Journal(journal.path).events()] == ["metrics"]


def test_disabled_tracking_says_so_instead_of_a_sync_hint(tmp_path: Path) -> None:
    tracker = Tracker("sqlite:///unused.db", "exp", "run", Journal(tmp_path / "journal.jsonl"), enabled=False)
    assert tracker.run_id is None and tracker.ui_hint == "off (tracking.enabled=false)"
