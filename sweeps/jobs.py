"""The outcome of every job of a multirun, as one JSON line per job in ``<sweep dir>/jobs.jsonl``.

Jobs may run in this process (basic launcher), in worker processes (joblib) or on cluster nodes
(submitit); a file in the shared sweep folder is what all of them can write and the launching
process can read back for the summary.
"""

from __future__ import annotations

import json
import os
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

JOBS_FILE = "jobs.jsonl"
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class JobRecord:
    """One job: its number, overrides, status (COMPLETED or FAILED), error and where it wrote."""

    num: int
    overrides: list[str]
    status: str
    output_dir: str
    error: str | None = None
    mlflow_run_id: str | None = None

    @property
    def failed(self) -> bool:
        return self.status != "COMPLETED"


def describe_error(error: BaseException) -> str:
    """``Type: message`` (all lines of the message), capped so a huge message stays readable."""
    text = "".join(traceback.format_exception_only(type(error), error)).strip()
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def start_log(sweep_dir: Path) -> None:
    """Forget records of an earlier sweep that wrote into the same folder."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / JOBS_FILE).unlink(missing_ok=True)


def append_record(sweep_dir: Path, record: JobRecord) -> None:
    """Append one line; a single ``O_APPEND`` write keeps lines of parallel jobs whole."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(asdict(record)) + "\n").encode("utf-8")
    fd = os.open(sweep_dir / JOBS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_records(sweep_dir: Path) -> list[JobRecord]:
    """All jobs recorded so far, ordered by job number."""
    path = sweep_dir / JOBS_FILE
    if not path.exists():
        return []
    records = [JobRecord(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return sorted(records, key=lambda r: r.num)


def summary(records: Iterable[JobRecord], sweep_dir: Path) -> str:
    """Human-readable summary: counts, then each failed job with its overrides and error."""
    records = list(records)
    failed = [r for r in records if r.failed]
    lines = [
        f"Sweep summary ({sweep_dir}): {len(records) - len(failed)} of {len(records)} jobs succeeded"
        + (f", {len(failed)} failed:" if failed else ".")
    ]
    for r in failed:
        where = f"output {r.output_dir}" + (f", MLflow run {r.mlflow_run_id} (FAILED)" if r.mlflow_run_id else "")
        error = (r.error or "unknown error").replace("\n", "\n      ")
        lines.append(f"  #{r.num} {' '.join(r.overrides)}\n      {error}\n      ({where})")
    return "\n".join(lines)
