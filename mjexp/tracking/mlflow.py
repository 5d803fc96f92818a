"""MLflow tracking that never kills a run and never loses what it was given.

``Tracker`` owns one MLflow run (the parent run of an invocation, or a nested child). Every call
is first appended to a local journal (see :mod:`mjexp.tracking.journal`), then sent to MLflow and
acknowledged. If MLflow fails (server down at start, killed mid-run, database locked for too long),
the failure is reported once and the run carries on journaling. When the run ends, the tracker
sends whatever MLflow missed (:func:`replay_journal`), so a store that came back marks the run
FINISHED with everything in it; if it is still down, ``python -m mjexp.tracking.sync`` replays the
journal later. A request the store answers with a refusal (a param value that differs from the one
already logged, say) is not an outage: that one entry is reported, marked refused in the journal and
skipped, and tracking carries on.

Default store: ``sqlite:///mlflow.db`` in the directory the command was launched
from; any tracking URI (e.g. ``http://127.0.0.1:5000``) works the same.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from mjexp.tracking.journal import Journal

log = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
PARAMS_PER_BATCH = 100  # MLflow's limit on params per log_batch call
SQLITE_BUSY_TIMEOUT_S = 60
# MLflow's HTTP client retries for minutes by default; a dead server should cost seconds.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}
# MLflow error codes of a store that answered and refused one request: resending it can never work,
# and the store itself is fine. Any other failure (no answer, timeout, locked database) is an outage.
REFUSALS = frozenset({
    "INVALID_PARAMETER_VALUE", "BAD_REQUEST", "MALFORMED_REQUEST", "RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS",
    "INVALID_STATE", "RESOURCE_DOES_NOT_EXIST",
})


def refused_by_store(error: BaseException) -> bool:
    """True when MLflow answered and refused the request (see :data:`REFUSALS`)."""
    from mlflow.exceptions import MlflowException

    return isinstance(error, MlflowException) and error.error_code in REFUSALS


def resolve_tracking_uri(uri: str | None, launch_dir: str | Path) -> str:
    """``None`` -> a SQLite store in the launch directory; relative sqlite paths are anchored there."""
    if not uri:
        return f"sqlite:///{Path(launch_dir).resolve() / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = uri[len("sqlite:///") :]
        query = ""
        if "?" in path:
            path, query = path.split("?", 1)
            query = "?" + query
        if not Path(path).is_absolute():
            return f"sqlite:///{(Path(launch_dir) / path).resolve()}{query}"
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :].split("?", 1)[0])


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialise store creation and schema migration between parallel jobs on one SQLite file.

    Several jobs creating a fresh MLflow SQLite store at once race in its Alembic migrations;
    an advisory lock next to the database makes the first one create it and the others wait.
    """
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(str(db) + ".lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def configure_sqlite_busy_timeout() -> None:
    """Make SQLite wait for a lock instead of failing at once with "database is locked".

    MLflow's SQLAlchemy store opens connections with sqlite3's default 5 s timeout; parallel jobs
    logging to one file can hold the write lock longer. A connect listener raises it.
    """
    import sqlalchemy
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if getattr(configure_sqlite_busy_timeout, "done", False):
        return

    @event.listens_for(Engine, "connect")
    def _set_timeout(dbapi_connection: Any, _record: Any) -> None:  # pragma: no cover - callback
        if type(dbapi_connection).__module__.startswith("sqlite3"):
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
            cursor.close()

    del sqlalchemy
    configure_sqlite_busy_timeout.done = True  # type: ignore[attr-defined]


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; lists become their string form."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            text = str(value)
            flat[name] = text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."
    return flat


class Tracker:
    """One MLflow run, journaled; see the module docstring."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        run_name: str,
        journal: Journal,
        tags: Mapping[str, str] | None = None,
        parent: "Tracker | None" = None,
        resume_run_id: str | None = None,
        enabled: bool = True,
        key: str = "parent",
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.journal = journal
        self.key = key
        self.parent = parent
        self.root: Tracker = parent.root if parent else self
        self.enabled = enabled
        self.resumed = resume_run_id is not None
        self.failed = not enabled
        self.outage = False  # on the root: some tracker of this invocation lost the store
        self._failure_reported = not enabled
        self.client = None
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        run_tags = dict(tags or {})
        if parent is not None and parent.run_id:
            run_tags["mlflow.parentRunId"] = parent.run_id
        self.journal.record(
            "run_start", key, experiment=experiment, run_name=run_name, tags=run_tags,
            parent=parent.key if parent else None, resume_run_id=resume_run_id, tracking_uri=tracking_uri,
        )
        self._guard("starting the MLflow run", lambda: self._start(run_tags, resume_run_id))

    # ---- MLflow plumbing ---------------------------------------------------------------------
    def _start(self, tags: dict[str, str], resume_run_id: str | None) -> None:
        from mlflow.tracking import MlflowClient

        configure_sqlite_busy_timeout()
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        with store_lock(self.tracking_uri):
            client = MlflowClient(tracking_uri=self.tracking_uri)
            self.experiment_id = get_or_create_experiment(client, self.experiment)
        if resume_run_id:
            run = client.get_run(resume_run_id)
            client.update_run(resume_run_id, status="RUNNING")
            self.run_id = run.info.run_id
        else:
            run = client.create_run(self.experiment_id, run_name=self.run_name, tags=tags)
            self.run_id = run.info.run_id
        self.client = client
        self.journal.record("run_id", self.key, mlflow_run_id=self.run_id, experiment_id=self.experiment_id)

    def _guard(self, what: str, action: Callable[[], None], seq: int | None = None) -> None:
        if self.failed:
            return
        try:
            action()
            if seq is not None:
                self.journal.record("ack", self.key, acks=seq)
        except Exception as error:  # noqa: BLE001 - tracking must never kill the run
            if seq is not None and self.run_id is not None and refused_by_store(error):
                self.journal.record("refused", self.key, refuses=seq, reason=str(error)[:2000])
                warnings.warn(
                    f"MLflow refused {what} for run {self.run_name!r} ({type(error).__name__}: {error}). Tracking "
                    f"continues; the refused entry stays in {self.journal.path}", stacklevel=3,
                )
                return
            self.failed = self.root.outage = True
            self._report(what, error)

    def _report(self, what: str, error: BaseException) -> None:
        if self.root._failure_reported:
            return
        self.root._failure_reported = True
        warnings.warn(
            f"MLflow tracking failed while {what} ({type(error).__name__}: {error}). Training "
            f"continues; everything is kept in {self.journal.path} and sent when the run ends if MLflow is "
            f"back; otherwise send it later with: python -m mjexp.tracking.sync {self.journal.path.parent}",
            stacklevel=3,
        )

    def _send(self, event: str, what: str, action: Callable[[], None], **payload: Any) -> None:
        seq = self.journal.record(event, self.key, **payload)
        self._guard(what, action, seq)

    # ---- public API --------------------------------------------------------------------------
    def log_params(self, params: Mapping[str, Any]) -> None:
        flat = flatten(params)
        self._send("params", "logging params", lambda: send_params(self.client, self.run_id, flat), params=flat)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        values = {k: float(v) for k, v in metrics.items()}
        timestamp_ms = int(time.time() * 1000)
        self._send(
            "metrics", "logging metrics", lambda: send_metrics(self.client, self.run_id, values, step, timestamp_ms),
            metrics=values, step=step, timestamp_ms=timestamp_ms,
        )

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        values = {k: str(v) for k, v in tags.items()}
        self._send("tags", "setting tags", lambda: send_tags(self.client, self.run_id, values), tags=values)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = str(Path(path).resolve())
        self._send(
            "artifact", f"uploading {path}", lambda: send_artifact(self.client, self.run_id, path, artifact_path),
            path=path, artifact_path=artifact_path,
        )

    def child(self, run_name: str, tags: Mapping[str, str] | None = None) -> "Tracker":
        """A nested run under this one (e.g. one evaluated sampling setting)."""
        return Tracker(
            self.tracking_uri, self.experiment, run_name, self.journal, tags=tags, parent=self,
            enabled=not self.failed, key=f"{self.key}/{run_name}",
        )

    def finish(self, status: str = "FINISHED", error: str | None = None) -> None:
        """Mark the run FINISHED, FAILED or KILLED (with the error message as a tag).

        The root run's finish also sends what an outage kept from MLflow (the whole journal's
        unacknowledged entries, children included), so one failed call never leaves a run RUNNING.
        """
        if error:
            self.set_tags({"error": error[:5000]})
        elif self.resumed:  # the error an earlier, stopped attempt left no longer describes the run
            self.set_tags({"error": ""})

        self._send(
            "finish", "closing the run", lambda: self.client.set_terminated(self.run_id, status=status), status=status
        )
        if self is self.root and self.outage and self.enabled and self.journal.path is not None:
            self._catch_up()

    def _catch_up(self) -> None:
        """Replay the journal now; say in one line what it did or why it could not."""
        try:
            report = replay_journal(self.journal)
        except Exception as error:  # noqa: BLE001 - tracking must never kill the run
            print(
                f"MLflow is still unreachable at the end of the run ({type(error).__name__}: {error}); "
                f"send the journal later with: python -m mjexp.tracking.sync {self.journal.path.parent}",
                file=sys.stderr,
            )
            return
        self.run_id = report.run_ids.get(self.key, self.run_id)
        self.failed = self.outage = False
        print(f"MLflow: sent the {report.sent} entries that an outage had kept back")

    @property
    def ui_hint(self) -> str:
        """Where to look at this run, or why there is none and how to log it later."""
        if not self.enabled:
            return "off (tracking.enabled=false)"
        if self.run_id is None:
            return f"not reached; sync later with: python -m mjexp.tracking.sync {self.journal.path}"
        if sqlite_path(self.tracking_uri):
            where = f"mlflow ui --backend-store-uri {self.tracking_uri}"
        else:
            where = self.tracking_uri
        return f"MLflow run {self.run_id} in experiment {self.experiment!r} ({where})"


def get_or_create_experiment(client: Any, name: str) -> str:
    """Experiment id for ``name``; tolerant of another job creating it at the same moment.

    On a SQLite store the artifacts go next to the database (``mlruns/`` beside ``mlflow.db``),
    not into whatever directory the process happens to run in.
    """
    from mlflow.exceptions import MlflowException

    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    db = sqlite_path(client.tracking_uri) if isinstance(getattr(client, "tracking_uri", None), str) else None
    location = (db.parent / "mlruns").resolve().as_uri() if db else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        existing = client.get_experiment_by_name(name)
        if existing is None:
            raise
        return existing.experiment_id


# ---- senders shared by live tracking and journal replay ---------------------------------------
def send_params(client: Any, run_id: str, params: Mapping[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(items), PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start : start + PARAMS_PER_BATCH])


def send_metrics(client: Any, run_id: str, metrics: Mapping[str, float], step: int | None, timestamp_ms: int) -> None:
    from mlflow.entities import Metric

    client.log_batch(run_id, metrics=[Metric(k, v, timestamp_ms, step or 0) for k, v in metrics.items()])


def send_tags(client: Any, run_id: str, tags: Mapping[str, str]) -> None:
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def send_artifact(client: Any, run_id: str, path: str, artifact_path: str | None) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"artifact {path} no longer exists")
    if os.path.isdir(path):
        client.log_artifacts(run_id, path, artifact_path)
    else:
        client.log_artifact(run_id, path, artifact_path)


# ---- journal replay: the end of a run after an outage, and ``python -m mjexp.tracking.sync`` -----
@dataclass
class ReplayReport:
    """What a replay did: the MLflow run of each journal run key, how many entries it sent, and the
    entries the store refused (journal line, what, why), which are marked so and never resent."""

    run_ids: dict[str, str]
    sent: int = 0
    refused: list[str] = field(default_factory=list)


def send_event(client: Any, run_id: str, event: Mapping[str, Any]) -> None:
    """Send one journaled event to ``run_id``."""
    kind = event["event"]
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


def replay_journal(journal: Journal, tracking_uri: str | None = None) -> ReplayReport:
    """Send every journaled event MLflow has not acknowledged, in order, and acknowledge it.

    Runs that never reached MLflow are created (children under their parent). An entry the store
    refuses is reported and marked refused; an outage raises (nothing is lost: run it again).
    ``tracking_uri``: send everything, acknowledged or not, to this other store instead.
    """
    from mlflow.tracking import MlflowClient

    events = list(journal.events())
    if not events:
        raise FileNotFoundError(f"no tracking journal with events at {journal.path}")
    done = set() if tracking_uri else {e["acks"] for e in events if e["event"] == "ack"}
    done |= {e["refuses"] for e in events if e["event"] == "refused"}
    run_ids = {} if tracking_uri else {e["run"]: e["mlflow_run_id"] for e in events if e["event"] == "run_id"}
    report = ReplayReport(run_ids)
    clients: dict[str, Any] = {}

    def client_for(uri: str) -> Any:
        if uri not in clients:
            configure_sqlite_busy_timeout()
            for name, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(name, value)
            with store_lock(uri):
                clients[uri] = MlflowClient(tracking_uri=uri)
        return clients[uri]

    run_uris: dict[str, str] = {}
    for event in events:
        key, kind = event["run"], event["event"]
        if kind == "run_start":
            uri = tracking_uri or event["tracking_uri"]
            run_uris[key] = uri
            if run_ids.get(key):
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
        if "seq" not in event or kind in ("run_id", "ack", "refused") or event["seq"] in done:
            continue
        try:
            send_event(client_for(run_uris[key]), run_ids[key], event)
        except Exception as error:  # noqa: BLE001 - a refusal is reported and skipped, the rest raises
            if not refused_by_store(error):
                raise
            journal.record("refused", key, refuses=event["seq"], reason=str(error)[:2000])
            report.refused.append(f"entry {event['seq']} ({kind} of run {key!r}): {type(error).__name__}: {error}")
            continue
        journal.record("ack", key, acks=event["seq"])
        report.sent += 1
    return report
