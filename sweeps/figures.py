"""Comparison plots over arms: FID vs CLIP-score curves, a metric vs nfe, a metric vs hires strength,
and each arm's paired difference from its baseline arm along the baseline's factor.

A *series* is one line: the arms that share every varying factor except the one on the curve
(e.g. one line per schedule, traced over guidance scale). Error bars are the seed-to-seed SE when
an arm has several seeds, else its within-run bootstrap SE (see :mod:`sweeps.aggregate`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sweeps.aggregate import Arm, Estimate, sort_key  # noqa: E402
from sweeps.paired import Baseline, PairedDifference  # noqa: E402

PANELS_PER_ROW = 4
# Factors that trace a curve, in order of preference, when they vary.
CURVE_FACTORS = ("guidance.scale", "sampler.steps", "hires.strength")


def error_bar(e: Estimate) -> float:
    return e.se_seeds if math.isfinite(e.se_seeds) else (e.se_boot if math.isfinite(e.se_boot) else 0.0)


GENERIC_LEAVES = ("name", "kind", "enabled")  # say nothing without their parent (``sampler.name``)


def short_names(keys: Sequence[str]) -> list[str]:
    """``schedule.zero_terminal_snr`` -> ``zero_terminal_snr`` where the short names stay distinct."""
    short = [k if k.rsplit(".", 1)[-1] in GENERIC_LEAVES else k.rsplit(".", 1)[-1] for k in keys]
    return short if len(set(short)) == len(short) else list(keys)


def series(arms: Sequence[Arm], varying: Sequence[str], along: str | None) -> dict[str, list[Arm]]:
    """Arms grouped by every varying factor except ``along``, each group sorted along it."""
    keys = [k for k in varying if k != along]
    names = dict(zip(keys, short_names(keys)))
    groups: dict[str, list[Arm]] = {}
    for arm in arms:
        label = ", ".join(f"{names[k]}={arm.factors.get(k, '-')}" for k in keys) or "all"
        groups.setdefault(label, []).append(arm)
    if along:
        for members in groups.values():
            members.sort(key=lambda a: sort_key(a.factors.get(along)))
    return groups


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated in (lower x, higher y), sorted by x."""
    front = [
        i for i, (x, y) in enumerate(points)
        if not any(x2 <= x and y2 >= y and (x2, y2) != (x, y) for x2, y2 in points)
    ]
    return sorted(front, key=lambda i: points[i][0])


def pareto_plot(arms: Sequence[Arm], varying: Sequence[str], fid: str, clip: str, path: Path) -> Path | None:
    """FID (x, lower is better) vs CLIP score (y, higher is better), one curve per series."""
    arms = [a for a in arms if fid in a.metrics and clip in a.metrics]
    if not arms:
        return None
    along = next((k for k in CURVE_FACTORS if k in varying), None)
    fig, ax = plt.subplots(figsize=(7, 5))
    for label, members in series(arms, varying, along).items():
        xs = [a.metrics[fid].mean for a in members]
        ys = [a.metrics[clip].mean for a in members]
        ax.errorbar(
            xs, ys, xerr=[error_bar(a.metrics[fid]) for a in members], yerr=[error_bar(a.metrics[clip]) for a in members],
            marker="o", capsize=3, label=label,
        )
        if along:
            for a, x, y in zip(members, xs, ys):
                ax.annotate(a.factors.get(along, ""), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    points = [(a.metrics[fid].mean, a.metrics[clip].mean) for a in arms]
    front = pareto_front(points)
    ax.plot(
        [points[i][0] for i in front], [points[i][1] for i in front], "k--", lw=0.8, marker="o", ms=11,
        mfc="none", alpha=0.6, label="Pareto front (all arms)",
    )
    ax.set_xlabel(f"{fid} (lower is better)")
    ax.set_ylabel(f"{clip} (higher is better)")
    ax.set_title("Quality vs prompt alignment" + (f" along {along}" if along else ""))
    ax.legend(fontsize=7)
    return save(fig, path)


def metric_vs_plot(
    arms: Sequence[Arm], varying: Sequence[str], metrics: Sequence[str], along: str,
    x_of: Callable[[Arm], float], x_label: str, path: Path,
) -> Path | None:
    """One panel per metric: metric vs ``x_of(arm)``, one line per series (all but ``along``)."""
    metrics = [m for m in metrics if any(m in a.metrics for a in arms)]
    if not metrics:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4.2), squeeze=False)
    groups = series(arms, varying, along)
    for ax, metric in zip(axes[0], metrics):
        for label, members in groups.items():
            members = sorted((a for a in members if metric in a.metrics), key=x_of)
            ax.errorbar(
                [x_of(a) for a in members], [a.metrics[metric].mean for a in members],
                yerr=[error_bar(a.metrics[metric]) for a in members], marker="o", capsize=3, label=label,
            )
        ax.set_xlabel(x_label)
        ax.set_ylabel(metric)
        ax.legend(fontsize=7)
    return save(fig, path)


def paired_plot(
    arms: Sequence[Arm], varying: Sequence[str], paired: Sequence[PairedDifference], baseline: Baseline,
    metrics: Sequence[str], path: Path,
) -> Path | None:
    """One panel per metric: arm minus baseline arm along the baseline's factor, one line per series
    (the other varying factors), the baseline at 0. Thin capped bars: the SE over seeds; wide pale
    bars: the within-run paired SE (the evaluation's sampling error), where there is one."""
    metrics = [m for m in metrics if any(d.metric == m for d in paired)]
    if not metrics:
        return None
    by_label = {a.label: a for a in arms}
    values = sorted({a.factors.get(baseline.key, "-") for a in arms}, key=sort_key)
    numeric = all(sort_key(v)[0] == 0 for v in values)
    x_of = (lambda v: float(v)) if numeric else values.index  # noqa: E731 - categorical: positions
    columns = min(len(metrics), PANELS_PER_ROW)
    rows_of_panels = math.ceil(len(metrics) / columns)
    fig, axes = plt.subplots(rows_of_panels, columns, figsize=(5.5 * columns, 4.2 * rows_of_panels), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    for ax, metric in zip(axes.flat, metrics):
        rows = [d for d in paired if d.metric == metric]
        for label, members in series([by_label[d.arm] for d in rows], varying, baseline.key).items():
            chosen = sorted((d for d in rows if by_label[d.arm] in members),
                            key=lambda d: sort_key(by_label[d.arm].factors.get(baseline.key)))
            xs = [x_of(by_label[d.arm].factors.get(baseline.key, "-")) for d in chosen]
            ys = [d.difference for d in chosen]
            seeds = [d.se if math.isfinite(d.se) else 0.0 for d in chosen]
            line = ax.errorbar(xs, ys, yerr=seeds, marker="o", capsize=3, label=label)
            within = [d.se_within if math.isfinite(d.se_within) else 0.0 for d in chosen]
            if any(within):
                ax.errorbar(xs, ys, yerr=within, fmt="none", elinewidth=6, alpha=0.25,
                            ecolor=line[0].get_color(), label=f"{label}: within-run SE")
        ax.axhline(0.0, color="k", lw=0.8, ls="--")
        ax.plot([x_of(baseline.value)], [0.0], "ks", label=f"baseline {baseline}")
        if not numeric:
            ax.set_xticks(range(len(values)), values)
        ax.set_xlabel(baseline.key)
        ax.set_ylabel(f"{metric} minus baseline arm's")
        ax.legend(fontsize=7)
    fig.suptitle("Paired with the baseline arm, seed by seed (capped bars: SE over seeds; pale bars: within-run SE)",
                 fontsize=9)
    return save(fig, path)


def comparison_plots(
    arms: Sequence[Arm], varying: Sequence[str], fid: str | None, clip: str | None, out_dir: Path
) -> list[Path]:
    """Every plot the varying factors support; returns the files written."""
    headline = [m for m in (fid, clip) if m]
    written = []
    if fid and clip:
        written.append(pareto_plot(arms, varying, fid, clip, out_dir / "pareto.png"))
    if "sampler.steps" in varying and all("nfe" in a.costs for a in arms):
        written.append(metric_vs_plot(
            arms, varying, headline, "sampler.steps", lambda a: a.costs["nfe"],
            "network function evaluations per image (nfe)", out_dir / "metric_vs_nfe.png",
        ))
    if "hires.strength" in varying:
        written.append(metric_vs_plot(
            arms, varying, headline, "hires.strength", lambda a: float(a.factors["hires.strength"]),
            "hires strength (fraction of the schedule re-noised)", out_dir / "metric_vs_hires_strength.png",
        ))
    return [p for p in written if p is not None]


def save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
