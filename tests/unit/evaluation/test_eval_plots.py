"""Report figures draw intervals as they are, including ones that exclude the point estimate."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.axes import Axes
from PIL import Image

from evaluation.plots import _interval, metric_curves, pareto


def records() -> list[dict]:
    # A bias-corrected FID interval can lie below the plug-in estimate (first two rows).
    rows = [(1.0, 0.017, 0.0, 0.013), (3.0, 0.027, 0.003, 0.024), (5.0, 0.9, 0.5, 1.2)]
    return [
        {"sampler": "ddim", "schedule": "linear", "guidance": g,
         "metrics": {"fid/judge": fid, "fid/judge/ci_low": lo, "fid/judge/ci_high": hi,
                     "clip_score/judge": 60 + g, "clip_score/judge/se": 0.5}}
        for g, fid, lo, hi in rows
    ]


def test_intervals_are_taken_as_they_are() -> None:
    assert _interval(records(), "fid/judge") == ([0.0, 0.003, 0.5], [0.013, 0.024, 1.2])
    lows, highs = _interval(records(), "clip_score/judge")
    assert lows == [60.5, 62.5, 64.5] and highs == [61.5, 63.5, 65.5]
    assert _interval(records(), "kid/judge") is None


def test_undefined_companions_leave_that_point_without_an_interval(tmp_path: Path) -> None:
    """An SE over a single prompt is NaN, written to report.json as null: the figure still comes out."""
    rows = records()
    rows[1]["metrics"]["clip_score/judge/se"] = None
    rows[2]["metrics"]["fid/judge/ci_low"] = None
    lows, highs = _interval(rows, "clip_score/judge")
    assert lows[0] == 60.5 and math.isnan(lows[1]) and math.isnan(highs[1])
    assert math.isnan(_interval(rows, "fid/judge")[0][2])
    for path in (pareto(rows, tmp_path / "pareto.png", "fid/judge", "clip_score/judge"),
                 metric_curves(rows, tmp_path / "curves.png", ["fid/judge", "clip_score/judge"])):
        with Image.open(path) as png:
            assert png.size[0] > 100


def test_figures_with_intervals_excluding_the_estimate_are_written(tmp_path: Path) -> None:
    for path in (pareto(records(), tmp_path / "pareto.png", "fid/judge", "clip_score/judge"),
                 metric_curves(records(), tmp_path / "curves.png", ["fid/judge", "clip_score/judge"])):
        with Image.open(path) as png:
            assert png.size[0] > 100


def test_the_real_data_level_is_drawn_on_its_metric_panel(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    drawn: list[tuple[str, float]] = []
    original = Axes.axhline

    def recording(self, y=0, *args, **kwargs):  # noqa: ANN001, ANN202
        drawn.append((self.get_title(), y))
        return original(self, y, *args, **kwargs)

    monkeypatch.setattr(Axes, "axhline", recording)
    rows = records()
    for row, value in zip(rows, (0.30, 0.25, 0.20)):
        row["metrics"].update({"diversity/judge/faithful": value, "diversity/judge/data": 0.31})
    metric_curves(rows, tmp_path / "curves.png", ["fid/judge", "diversity/judge/faithful"])
    assert drawn == [("diversity/judge/faithful", 0.31)]  # on the diversity panel only
