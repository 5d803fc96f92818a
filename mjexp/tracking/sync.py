"""Replay a run's tracking journal into MLflow: ``python -m mjexp.tracking.sync OUTPUT_DIR``.

Use it after a run whose tracking server was unreachable or died: every event the run journaled
but MLflow never acknowledged is sent now, in order, and acknowledged in the journal, so running
the command twice sends nothing twice. An entry the store refuses (e.g. a param logged twice with
different values) is named, marked refused and skipped; the rest is still sent.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mjexp.tracking.journal import JOURNAL_NAME, Journal
from mjexp.tracking.mlflow import replay_journal


def sync(output_dir: str | Path, tracking_uri: str | None = None) -> dict[str, str]:
    """Send unacknowledged events; returns {journal run key: MLflow run id}."""
    path = Path(output_dir)
    report = replay_journal(Journal(path / JOURNAL_NAME if path.is_dir() else path), tracking_uri)
    for line in report.refused:
        print(f"not sent, MLflow refused it: {line}", file=sys.stderr)
    return report.run_ids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", help="a run's output folder (or its tracking_journal.jsonl)")
    parser.add_argument("--tracking-uri", help="send to this store instead of the one the run used")
    args = parser.parse_args(argv)
    try:
        run_ids = sync(args.output_dir, args.tracking_uri)
    except FileNotFoundError as error:
        sys.exit(f"error: {error}")
    except Exception as error:  # noqa: BLE001 - an outage: one line, nothing lost, run it again
        sys.exit(f"error: MLflow could not be reached ({type(error).__name__}: {error}); nothing is lost: "
                 "run the command again when the store is up")
    for key, run_id in run_ids.items():
        print(f"{key}: MLflow run {run_id}")


if __name__ == "__main__":
    main()
