"""Each arm minus its baseline arm, seed by seed.

The baseline of an arm is the arm with the same factors except one, ``KEY`` set to ``VALUE``
(``--baseline guidance.scale=1``). Differences are taken per seed and then averaged: where the two
arms differ only in a sampling setting, a seed's two values come from one training run, so the
training's randomness cancels, and where they differ in training, runs of one seed still share
initialisation, data order and noise. The error bar is the SE of the per-seed differences (and a
Student-t interval, as there are usually few seeds); it is undefined with one shared seed.

Within one training run ``mjexp.eval`` also tests each setting against its first one image by image
(same prompts and noise) and logs ``paired/<metric>`` and ``paired/<metric>/se`` with the first
setting's run name (``paired.baseline``; settings are runs under one parent run). Where every shared seed's pair is such a pair, their
within-run SE is reported too (``se_within``, the mean of the seeds' SEs: their evaluations share
prompts and noise, see :func:`sweeps.aggregate.shared_sampling_se`): the evaluation's sampling
error alone, which leaves training randomness out and is the only error bar of a single seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from sweeps.aggregate import Arm, shared_sampling_se, sort_key
from sweeps.runs import Measurement

BASELINE_PARAM = "paired.baseline"  # what mjexp.eval logs with a setting's paired differences


@dataclass(frozen=True)
class Baseline:
    key: str
    value: str

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


@dataclass
class PairedDifference:
    """Mean over shared seeds of (arm - baseline arm), with its SE and t-interval over seeds."""

    arm: str
    baseline: str
    metric: str
    difference: float
    se: float  # NaN with one shared seed
    n_seeds: int
    ci_low: float
    ci_high: float
    se_within: float = math.nan  # from mjexp.eval's within-run paired tests, where every pair has one


def same_value(a: str | None, b: str | None) -> bool:
    """Equal as numbers where both are numbers (``1`` and ``1.0``), else as text."""
    try:
        return float(a) == float(b)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return a == b


def with_factor(factors: dict[str, str], key: str, value: str) -> dict[str, str]:
    """``factors`` with ``key`` set to ``value`` (``-``, as in arm labels, means absent)."""
    changed = {k: v for k, v in factors.items() if k != key}
    return changed if value == "-" else {**changed, key: value}


def parse_baseline(text: str, arms: Sequence[Arm], varying: Sequence[str]) -> Baseline:
    """``KEY=VALUE`` checked against the arms: KEY must vary between them and VALUE occur."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--baseline takes KEY=VALUE (e.g. guidance.scale=1), got {text!r}")
    if key not in varying:
        raise ValueError(f"--baseline {key!r} is not a factor that varies between the arms; those are: "
                         f"{', '.join(varying) or 'none'}")
    values = sorted({a.factors.get(key, "-") for a in arms}, key=sort_key)
    matches = [v for v in values if same_value(v, value)]
    if not matches:
        raise ValueError(f"no arm has {key}={value}; its values are: {', '.join(values)}")
    return Baseline(key, matches[0])


def default_baseline(arms: Sequence[Arm], varying: Sequence[str], setting_keys: set[str]) -> Baseline | None:
    """The first varying sampling setting (paired within training runs) at its first value, else the
    first varying training override; None when nothing varies."""
    if not varying:
        return None
    key = next((k for k in varying if k in setting_keys), varying[0])
    return Baseline(key, min((a.factors.get(key, "-") for a in arms), key=sort_key))


def t_interval(differences: np.ndarray, level: float) -> tuple[float, float, float]:
    """Mean's SE and Student-t interval of per-seed differences (NaN for one)."""
    n = len(differences)
    if n < 2:
        return math.nan, math.nan, math.nan
    se = float(differences.std(ddof=1) / math.sqrt(n))
    half = float(stats.t.ppf(0.5 + level / 2, df=n - 1)) * se
    mean = float(differences.mean())
    return se, mean - half, mean + half


def within_run_se(arm: Arm, base: Arm, metric: str, seeds: Sequence[str | None]) -> float:
    """Within-run SE of the mean paired difference from each seed's paired test: only where every
    seed has one run per arm and the arm's run was paired with the baseline arm's run (NaN else)."""
    ses = []
    for seed in seeds:
        own = [m for m in arm.members if m.replicate == seed]
        ref = [m for m in base.members if m.replicate == seed]
        if len(own) != 1 or len(ref) != 1 or not was_paired_with(own[0], ref[0], metric):
            return math.nan
        ses.append(own[0].metrics[f"paired/{metric}/se"])
    return shared_sampling_se(ses)


def was_paired_with(m: Measurement, baseline: Measurement, metric: str) -> bool:
    """``m``'s within-run paired test of ``metric`` was against ``baseline``: a run of its parent."""
    return (m.parent_id == baseline.parent_id and m.params.get(BASELINE_PARAM) == baseline.run_name
            and f"paired/{metric}/se" in m.metrics)


def paired_differences(
    arms: Sequence[Arm], metrics: Sequence[str], baseline: Baseline, level: float = 0.95
) -> list[PairedDifference]:
    """Every non-baseline arm that has a baseline arm and a shared seed, per metric, arms' order."""
    by_factors = {frozenset(a.factors.items()): a for a in arms}
    results = []
    for arm in arms:
        if same_value(arm.factors.get(baseline.key, "-"), baseline.value):
            continue
        base = by_factors.get(frozenset(with_factor(arm.factors, baseline.key, baseline.value).items()))
        if base is None:
            continue
        for metric in metrics:
            own, ref = arm.per_replicate.get(metric, {}), base.per_replicate.get(metric, {})
            shared = sorted(set(own) & set(ref), key=sort_key)
            if not shared:
                continue
            differences = np.array([own[seed] - ref[seed] for seed in shared], dtype=np.float64)
            se, low, high = t_interval(differences, level)
            results.append(PairedDifference(arm.label, base.label, metric, float(differences.mean()), se,
                                            len(shared), low, high, within_run_se(arm, base, metric, shared)))
    return results
