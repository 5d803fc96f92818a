"""Wall time per stage of a run (domain CLIP, diffusion training, judge, generation and scoring),
printed at the end and logged as ``cost/stage/<stage>_seconds``: where a run's time went, on every
machine it runs on, without a profiler."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from mjexp.runs.progress import format_duration


class StageClock:
    """Accumulates the wall time of named stages, in the order they first ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.start = time.perf_counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - began

    def metrics(self) -> dict[str, float]:
        """``cost/stage/<name>_seconds`` per stage, and ``cost/stage/total_seconds`` since creation."""
        stages = {f"cost/stage/{name.replace(' ', '_')}_seconds": s for name, s in self.seconds.items()}
        return stages | {"cost/stage/total_seconds": time.perf_counter() - self.start}

    def line(self) -> str:
        """``domain CLIP 1m39s, diffusion training 10m56s, ... (total 18m01s)``."""
        parts = [f"{name} {format_duration(s)}" for name, s in self.seconds.items()]
        return ", ".join(parts) + f" (total {format_duration(time.perf_counter() - self.start)})"
