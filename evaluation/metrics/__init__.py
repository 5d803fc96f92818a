"""Every metric is one file here with a :class:`Metric` (how it scores one setting, its paired test
against a baseline setting, how it prints and which of its names ``sweeps.compare`` tabulates),
registered in :mod:`evaluation.metrics.registry` (docs/evaluation.md, adding a metric)."""

from evaluation.metrics.metric import Metric, MetricScores, PairingSettings, ScoreInputs
from evaluation.metrics.registry import (
    add_paired_comparisons,
    metric_of,
    prefixes,
    is_headline,
    paired_lines,
    paired_metrics,
    register,
    registered,
    registered_temporarily,
    unregister,
)

__all__ = [
    "Metric",
    "MetricScores",
    "PairingSettings",
    "ScoreInputs",
    "add_paired_comparisons",
    "metric_of",
    "prefixes",
    "is_headline",
    "paired_lines",
    "paired_metrics",
    "register",
    "registered",
    "registered_temporarily",
    "unregister",
]
