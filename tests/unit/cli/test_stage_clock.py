"""Stage timings: each stage's wall time accumulates over its runs, in first-run order."""

from __future__ import annotations

import pytest

from mjexp.runs import stage_clock
from mjexp.runs.stage_clock import StageClock


def test_stages_accumulate_and_print_in_first_run_order(monkeypatch: pytest.MonkeyPatch) -> None:
    now = iter([0.0, 1.0, 66.0, 70.0, 71.0, 80.0, 85.0, 90.0])
    monkeypatch.setattr(stage_clock.time, "perf_counter", lambda: next(now))
    clock = StageClock()  # starts at 0
    with clock.stage("domain CLIP"):  # 1 -> 66
        pass
    with clock.stage("diffusion training"):  # 70 -> 71
        pass
    with clock.stage("domain CLIP"):  # 80 -> 85: again, added
        pass
    assert clock.seconds == {"domain CLIP": 70.0, "diffusion training": 1.0}
    assert clock.line() == "domain CLIP 1m10s, diffusion training 1s (total 1m30s)"  # total at 90
