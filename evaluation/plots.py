"""Report figures, drawn with matplotlib's object API (no global backend switch).

``pareto``: FID against CLIP-score across guidance scales, one curve per sampler/schedule, the
trade-off figure of classifier-free guidance (Ho & Salimans, 2022, fig. 1).
``metric_curves``: each headline metric against guidance, one line per curve group (FID, CLIP-score,
attribute accuracy, per-prompt diversity with the real data's level).
"""

from __future__ import annotations

import math

from collections import defaultdict
from pathlib import Path
from typing import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

Record = Mapping[str, object]
GROUP_KEYS = ("sampler", "schedule")


def headline(records: Sequence[Record], family: str, prefer: Sequence[str] = ()) -> str | None:
    """The metric of ``family`` ("fid", "clip_score", ...) to plot: the first preferred name any record
    has, else the first ``family/<model>`` name found (not a CI/std/se companion)."""
    names = [n for r in records for n in r["metrics"] if n.startswith(f"{family}/") and n.count("/") == 1]
    for name in prefer:
        if name in names:
            return name
    return names[0] if names else None


def curve_label(record: Record) -> str:
    return " / ".join(str(record.get(key)) for key in GROUP_KEYS)


def _curves(records: Sequence[Record]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        if record.get("guidance") is not None:  # images made elsewhere have no guidance axis
            groups[curve_label(record)].append(record)
    return {label: sorted(rows, key=lambda r: float(r["guidance"])) for label, rows in groups.items()}


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _interval(rows: Sequence[Record], metric: str) -> tuple[list[float], list[float]] | None:
    """(lows, highs) from ``metric/ci_low|ci_high``, or estimate -+ ``metric/se``; None without either.

    A bias-corrected (basic bootstrap) FID interval can lie entirely below the plug-in estimate
    (FID's upward bias exceeds its spread near 0), so intervals are drawn as they are, never as
    +- distances from the point.
    """
    metrics = [r["metrics"] for r in rows]
    if all(f"{metric}/ci_low" in m for m in metrics):
        return [_defined(m[f"{metric}/ci_low"]) for m in metrics], [_defined(m[f"{metric}/ci_high"]) for m in metrics]
    if all(f"{metric}/se" in m for m in metrics):
        ses = [_defined(m[f"{metric}/se"]) for m in metrics]
        return [m[metric] - se for m, se in zip(metrics, ses)], [m[metric] + se for m, se in zip(metrics, ses)]
    return None


def _defined(value: float | None) -> float:
    """An undefined companion (NaN, or None once written as JSON; e.g. the SE of a diversity
    measured on one prompt) as NaN, which matplotlib leaves undrawn."""
    return math.nan if value is None else value


def _plot_with_intervals(axes, x: list[float], y: list[float], x_interval, y_interval, label: str) -> None:  # noqa: ANN001
    """A line with markers, plus each point's interval on either axis in the line's colour."""
    (line,) = axes.plot(x, y, marker="o", label=label)
    colour = line.get_color()
    if y_interval is not None:
        axes.vlines(x, *y_interval, colors=colour, alpha=0.6)
    if x_interval is not None:
        axes.hlines(y, *x_interval, colors=colour, alpha=0.6)


def pareto(records: Sequence[Record], path: Path, fid_metric: str, clip_metric: str, note: str = "") -> Path:
    """FID (lower is better) vs CLIP-score (higher is better), points labelled by guidance;
    ``note`` is appended to the title (e.g. that judge metrics are unreliable)."""
    figure = Figure(figsize=(6, 4.5))
    axes = figure.add_subplot()
    for label, rows in _curves(records).items():
        rows = [r for r in rows if fid_metric in r["metrics"] and clip_metric in r["metrics"]]
        if not rows:
            continue
        x = [r["metrics"][clip_metric] for r in rows]
        y = [r["metrics"][fid_metric] for r in rows]
        _plot_with_intervals(axes, x, y, _interval(rows, clip_metric), _interval(rows, fid_metric), label)
        for xi, yi, r in zip(x, y, rows):
            axes.annotate(f"w={r['guidance']}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    axes.set_xlabel(f"{clip_metric} (higher is better)")
    axes.set_ylabel(f"{fid_metric} (lower is better)")
    axes.set_title(f"FID vs CLIP-score across guidance scales{note}", fontsize=10)
    axes.legend(title=" / ".join(GROUP_KEYS), fontsize=8)
    axes.grid(alpha=0.3)
    return _save(figure, path)


def metric_curves(records: Sequence[Record], path: Path, metrics: Sequence[str]) -> Path:
    """One panel per metric against guidance scale, one line per sampler/schedule; the real data's
    level ``<family>/<model>/data`` of a metric ``<family>/<model>[/...]`` (e.g. diversity) is
    drawn as a dashed line."""
    figure = Figure(figsize=(4.2 * len(metrics), 3.6))
    for i, metric in enumerate(metrics):
        axes = figure.add_subplot(1, len(metrics), i + 1)
        for label, rows in _curves(records).items():
            rows = [r for r in rows if metric in r["metrics"]]
            if rows:
                _plot_with_intervals(
                    axes, [float(r["guidance"]) for r in rows], [r["metrics"][metric] for r in rows],
                    None, _interval(rows, metric), label,
                )
        axes.set_xlabel("guidance scale")
        axes.set_title(metric, fontsize=9)
        data_key = "/".join(metric.split("/")[:2]) + "/data"
        data = next((r["metrics"][data_key] for r in records if data_key in r["metrics"]), None)
        if data is not None:
            axes.axhline(data, color="black", linestyle="--", linewidth=1, label="real data")
            axes.legend(fontsize=7)
        axes.grid(alpha=0.3)
    figure.axes[0].legend(fontsize=7)
    return _save(figure, path)
