"""An append-only JSONL record of everything a run sends to MLflow.

Every tracking call is written here first, so a tracking server that is down at start or dies
mid-run loses nothing: ``python -m mjexp.tracking.sync OUTPUT_DIR`` replays the journal into
MLflow afterwards.

Tracking never stops training, and neither does the journal: a line that cannot be written (a
full disk) is reported once and kept in memory, and written before the next one as soon as the
disk has room again (a failed append is cut back, never leaving half a line).
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

from mjexp.files.disk import append_durably

JOURNAL_NAME = "tracking_journal.jsonl"


class Journal:
    """One line per event: ``{"event": ..., "run": <local run key>, "time": ..., ...}``."""

    def __init__(self, path: str | Path | None) -> None:
        """``path=None`` records nothing (the non-primary processes of a distributed run)."""
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # Sequence numbers continue across restarts (a resumed run appends to the same file).
        self._seq = max((e.get("seq", 0) for e in self.events()), default=0)
        self._unwritten: list[bytes] = []  # lines a failed write left in memory, oldest first
        self._failure_reported = False

    def record(self, event: str, run: str, **payload: Any) -> int:
        """Append one event; returns its sequence number (acknowledged later by an "ack")."""
        self._seq += 1
        if self.path is None:
            return self._seq
        entry = {"event": event, "run": run, "seq": self._seq, "time": time.time(), **payload}
        self._unwritten.append((json.dumps(entry, default=str) + "\n").encode("utf-8"))
        try:
            append_durably(self.path, b"".join(self._unwritten))
        except OSError as error:
            self._report(error)
        else:
            self._unwritten.clear()
        return self._seq

    def _report(self, error: OSError) -> None:
        if self._failure_reported:
            return
        self._failure_reported = True
        warnings.warn(
            f"cannot write the tracking journal {self.path} ({type(error).__name__}: {error}). Training continues "
            "and keeps sending to MLflow; the journal catches up when the disk has room again",
            stacklevel=3,
        )

    def events(self) -> Iterator[dict[str, Any]]:
        if self.path is None or not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    # A crash can leave a half-written last line; everything before it is intact.
                    if number > 1 and f.read().strip() == "":
                        return
                    raise ValueError(f"{self.path}:{number}: corrupt journal line") from None
