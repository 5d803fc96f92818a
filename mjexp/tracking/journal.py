"""An append-only JSONL record of everything a run sends to MLflow.

Every tracking call is written here first, so a tracking server that is down at start or dies
mid-run loses nothing: ``python -m mjexp.tracking.sync OUTPUT_DIR`` replays the journal into
MLflow afterwards.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

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

    def record(self, event: str, run: str, **payload: Any) -> int:
        """Append one event; returns its sequence number (acknowledged later by an "ack")."""
        self._seq += 1
        if self.path is None:
            return self._seq
        entry = {"event": event, "run": run, "seq": self._seq, "time": time.time(), **payload}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return self._seq

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
