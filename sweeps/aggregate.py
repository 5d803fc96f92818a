"""Measurements -> arms: mean and two standard errors per metric, mean costs.

* ``se_seeds``: the spread between repeated trainings, std (ddof=1) / sqrt(n). It is the honest
  error bar of an arm, and undefined (NaN) for an arm with a single seed.
* ``se_boot``: the evaluation's own sampling error, i.e. each run's bootstrap over images
  (``metric/ci_low``, ``metric/ci_high`` as a normal-approximation SE, (high - low) / (2 z)) or its
  reported ``metric/se``, as the mean of the runs' SEs (:func:`shared_sampling_se`). It ignores
  training randomness, so it understates the arm's error whenever seeds differ.

Runs of one seed (the same training repeated, e.g. after a crash or a code change) are averaged
first: they share the seed's initialisation, data order and noise, so they are not independent
draws of the training randomness, and counting them as such would shrink ``se_seeds``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Iterable, Sequence

import numpy as np

from evaluation.metrics import metric_of
from evaluation.metrics.rule_reading import AGREEMENT
from evaluation.settings import ScoringConfig
from evaluation.metrics import is_headline as is_metric_headline
from sweeps.runs import JUDGE_WEIGHTS_PARAM, Measurement

COMPANIONS = ("/ci_low", "/ci_high", "/se", "/std")
VALIDITY_PREFIX = "judge_validity"  # the judge's checks on real images (evaluation.judge.Validity.as_metrics)
NOISE_FLAG = 0.5  # an arm whose noise_share reaches this makes mostly noise
DEFAULT_LEVEL = 0.95  # bootstrap interval level when a run does not record its own


@dataclass
class Estimate:
    mean: float
    se_seeds: float
    se_boot: float
    n: int


@dataclass
class Arm:
    """Measurements sharing all factors; ``label`` names only the factors that vary between arms."""

    factors: dict[str, str]
    label: str
    replicates: list[str | None]  # distinct seeds
    runs: int  # measurements pooled (more than ``replicates`` when a seed was run again)
    metrics: dict[str, Estimate] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)
    # Per metric, per seed: the value (mean of that seed's runs); what paired comparisons match.
    per_replicate: dict[str, dict[str | None, float]] = field(default_factory=dict)
    members: list[Measurement] = field(default_factory=list)

    @property
    def single_seed(self) -> bool:
        return len(self.replicates) < 2


def is_headline(name: str) -> bool:
    """A column of the comparison: a registered metric's headline (:mod:`evaluation.metrics`,
    optionally under ``base/``), not a companion, cost, judge check or paired difference."""
    core = name.removeprefix("base/")
    if core.startswith(("cost/", "paired/", f"{VALIDITY_PREFIX}/")) or core.endswith(COMPANIONS):
        return False
    return is_metric_headline(core)


def headline_metrics(measurements: Iterable[Measurement]) -> list[str]:
    """Headline metric names: final stage before a hires run's first stage (``base/``), then in the
    metrics' registry order."""
    names = {name for m in measurements for name in m.metrics if is_headline(name)}

    def order(name: str) -> tuple[bool, int, int, str]:
        position, prefix, _ = metric_of(name)
        return name.startswith("base/"), position, prefix, name

    return sorted(names, key=order)


def bootstrap_se(m: Measurement, metric: str) -> float:
    """One run's within-run SE of ``metric`` (see the module docstring); NaN if it has none."""
    if f"{metric}/se" in m.metrics:
        return m.metrics[f"{metric}/se"]
    low, high = m.metrics.get(f"{metric}/ci_low"), m.metrics.get(f"{metric}/ci_high")
    if low is None or high is None:
        return math.nan
    level_key = f"metric_definitions.{metric.removeprefix('base/')}.bootstrap.level"
    level = float(m.params.get(level_key, DEFAULT_LEVEL))
    return (high - low) / (2 * NormalDist().inv_cdf(0.5 + level / 2))


def shared_sampling_se(ses: Sequence[float]) -> float:
    """The evaluation sampling error of a mean over runs: the mean of the runs' SEs.

    Every run of a sweep is evaluated on the same prompts, noise (``eval.seed``) and reference
    split, so the runs' sampling errors are correlated and do not average out over seeds as
    independent errors would (sqrt(sum se_i^2) / n). The mean of the SEs is the SE of the mean
    when they are fully correlated, and bounds it otherwise."""
    return float(np.mean(ses))


def estimate(values: Sequence[float], boot_ses: Sequence[float]) -> Estimate:
    n = len(values)
    x = np.asarray(values, dtype=np.float64)
    se_seeds = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return Estimate(float(x.mean()), se_seeds, shared_sampling_se(boot_ses), n)


def varying_factors(measurements: Sequence[Measurement]) -> list[str]:
    """Factors whose value differs somewhere (a missing factor counts as a value): training
    overrides first, then setting keys, each sorted by name."""
    training = sorted({k for m in measurements for k in m.training})
    setting = sorted({k for m in measurements for k in m.setting} - set(training))
    return [k for k in training + setting if len({m.factors.get(k) for m in measurements}) > 1]


def sort_key(value: str | None) -> tuple[int, float, str]:
    """Numbers in numeric order before other values in text order."""
    try:
        return (0, float(value), "")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def arm_label(factors: dict[str, str], varying: Sequence[str]) -> str:
    return ", ".join(f"{k}={factors.get(k, '-')}" for k in varying) or "all runs"


def per_replicate(members: Sequence[Measurement], metric: str) -> dict[str | None, tuple[float, float]]:
    """Per seed with ``metric``: the mean over that seed's runs and the bootstrap SE of that mean."""
    by_seed: dict[str | None, list[Measurement]] = {}
    for m in members:
        if metric in m.metrics:
            by_seed.setdefault(m.replicate, []).append(m)
    return {
        seed: (
            float(np.mean([m.metrics[metric] for m in runs])),
            shared_sampling_se([bootstrap_se(m, metric) for m in runs]),
        )
        for seed, runs in by_seed.items()
    }


def group_arms(measurements: Sequence[Measurement], metrics: Sequence[str] | None = None) -> list[Arm]:
    """One arm per distinct factor set, ordered by the varying factors' values."""
    metrics = list(metrics) if metrics is not None else headline_metrics(measurements)
    varying = varying_factors(measurements)
    groups: dict[tuple, list[Measurement]] = {}
    for m in measurements:
        groups.setdefault(tuple(sorted(m.factors.items())), []).append(m)
    arms = []
    for members in groups.values():
        factors = members[0].factors
        seeds = sorted({m.replicate for m in members}, key=sort_key)
        arm = Arm(factors, arm_label(factors, varying), seeds, len(members), members=members)
        for name in metrics:
            values = per_replicate(members, name)
            if values:
                arm.per_replicate[name] = {seed: value for seed, (value, _) in values.items()}
                arm.metrics[name] = estimate([v for v, _ in values.values()], [se for _, se in values.values()])
        cost_names = sorted({c for m in members for c in m.costs})
        arm.costs = {c: float(np.mean([m.costs[c] for m in members if c in m.costs])) for c in cost_names}
        arms.append(arm)
    return sorted(arms, key=lambda a: [sort_key(a.factors.get(k)) for k in varying])


def fixed_encoder_seeds(measurements: Sequence[Measurement]) -> set[str]:
    """The domain-CLIP seeds of arms whose repeats (2+ replicates) all share one encoder seed:
    their seed-to-seed error leaves out the text encoder's draw."""
    groups: dict[tuple, list[Measurement]] = {}
    for m in measurements:
        groups.setdefault(tuple(sorted(m.factors.items())), []).append(m)
    fixed = set()
    for members in groups.values():
        seeds = {m.encoder_seed for m in members}
        if len({m.replicate for m in members}) > 1 and len(seeds) == 1 and None not in seeds:
            fixed |= seeds
    return fixed


def judges_of_arms(arms: Sequence[Arm], measurements: Sequence[Measurement]) -> dict[str, list[str]]:
    """The judges (weights SHA-256) that scored the judge metrics, each with the labels of its arms.

    Each judge draw reads the same images at its own level, so arms scored by different judges
    are measured with different instruments."""
    by_factors: dict[tuple, set[str]] = {}
    for m in measurements:
        if JUDGE_WEIGHTS_PARAM in m.params:
            by_factors.setdefault(tuple(sorted(m.factors.items())), set()).add(m.params[JUDGE_WEIGHTS_PARAM])
    judges: dict[str, list[str]] = {}
    for arm in arms:
        for sha in sorted(by_factors.get(tuple(sorted(arm.factors.items())), ())):
            judges.setdefault(sha, []).append(arm.label)
    return judges


def unreliable_judge_arms(arms: Sequence[Arm]) -> list[str]:
    """Labels of the arms with a run whose judge failed a validity check (attribute accuracy or
    caption retrieval on real images): their judge metrics are not to be trusted."""
    return [
        arm.label for arm in arms
        if any(m.metrics.get(f"{VALIDITY_PREFIX}/reliable", 1.0) < 1.0 for m in arm.members)
    ]


def disagreeing_judge_arms(arms: Sequence[Arm], threshold: float = ScoringConfig.validity_threshold) -> list[tuple[str, str, float]]:
    """(label, attribute, agreement) where the judge agrees with the rule reader on fewer generated
    images than its validity threshold: its number for that attribute is not to be trusted there."""
    return [
        (arm.label, name.removeprefix(f"{AGREEMENT}/"), estimate.mean) for arm in arms
        for name, estimate in arm.metrics.items() if name.startswith(f"{AGREEMENT}/") and estimate.mean < threshold
    ]


def noisy_arms(arms: Sequence[Arm]) -> list[tuple[str, float]]:
    """(label, noise share) of the arms whose images are mostly noise (:data:`NOISE_FLAG`)."""
    return [
        (arm.label, arm.metrics["noise_share"].mean) for arm in arms
        if "noise_share" in arm.metrics and arm.metrics["noise_share"].mean >= NOISE_FLAG
    ]
