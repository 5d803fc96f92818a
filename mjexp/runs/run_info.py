"""``run.json``: which MLflow run a run folder belongs to (written when it opens, read to resume it,
to tag an evaluation with the training it evaluates, and by the sweep summary)."""

from __future__ import annotations

import json
from pathlib import Path

RUN_INFO = "run.json"


def write_run_info(folder: Path, run_id: str | None, tracking_uri: str, experiment: str) -> None:
    (folder / RUN_INFO).write_text(
        json.dumps({"mlflow_run_id": run_id, "tracking_uri": tracking_uri, "experiment": experiment}, indent=2)
    )


def read_run_id(folder: Path) -> str | None:
    """The MLflow run id recorded in ``folder``, or None (no record, or MLflow was unreachable)."""
    info = folder / RUN_INFO
    return json.loads(info.read_text()).get("mlflow_run_id") if info.is_file() else None
