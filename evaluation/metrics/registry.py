"""The registered metrics, in order: the order they are scored in, their paired comparisons are
printed in and ``sweeps.compare`` tabulates their names in."""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

from evaluation.metrics.attribute_accuracy import AttributeAccuracyMetric
from evaluation.metrics.metric import Metric, PairingSettings
from evaluation.metrics.clip_scores import ClipScores
from evaluation.metrics.fid_kid import FidKid
from evaluation.metrics.noise_images import NoiseImages
from evaluation.metrics.prompt_diversity import PromptDiversity
from evaluation.metrics.rule_reading import RuleReading
from evaluation.metrics.window_fid import WindowFid

_METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add ``metric`` after the registered ones; its name and prefixes must be new."""
    taken = {prefix for m in _METRICS.values() for prefix in prefixes(m)}
    clash = (set(prefixes(metric)) & taken) | ({metric.name} & set(_METRICS))
    if not metric.name or clash:
        raise ValueError(f"metric {metric.name!r}: needs a name not taken; taken here: {sorted(clash)}")
    _METRICS[metric.name] = metric
    return metric


def unregister(name: str) -> None:
    del _METRICS[name]


@contextmanager
def registered_temporarily(metric: Metric) -> Iterator[Metric]:
    """``metric`` registered inside the block (an experiment's or a test's own metric)."""
    register(metric)
    try:
        yield metric
    finally:
        unregister(metric.name)


def registered() -> list[Metric]:
    return list(_METRICS.values())


def prefixes(metric: Metric) -> tuple[str, ...]:
    return metric.prefixes or (metric.name,)


def metric_of(name: str) -> tuple[int, int, Metric | None]:
    """Who logs metric ``name`` (``base/`` stripped): the registry position, the index of the
    longest matching prefix and the metric; (len(registry), 0, None) when no registered one does."""
    core = name.removeprefix("base/")
    best: tuple[int, int, int, Metric | None] = (-1, len(_METRICS), 0, None)
    for position, metric in enumerate(_METRICS.values()):
        for index, prefix in enumerate(prefixes(metric)):
            if (core == prefix or core.startswith(prefix + "/")) and len(prefix) > best[0]:
                best = (len(prefix), position, index, metric)
    return best[1:]


def is_headline(name: str) -> bool:
    """Whether logged metric ``name`` (optionally under ``base/``) is one of its metric's headlines
    (:meth:`Metric.headline`); for a name no metric registers: ``family/model``."""
    core = name.removeprefix("base/")
    metric = metric_of(core)[2]
    return metric.headline(core) if metric is not None else core.count("/") == 1


def add_paired_comparisons(
    records: Sequence[dict[str, Any]], states: Sequence[Mapping[str, Any]], settings: PairingSettings
) -> None:
    """Each record after the first gets, per metric with a paired test, its difference from the
    first (same prompts and noise) under the metric's ``record_key``; ``states[i]``: record i's
    :attr:`MetricScores.state` by metric name."""
    if len(records) < 2:
        return
    for metric in registered():
        baseline = states[0].get(metric.name)
        if metric.record_key is None or baseline is None:
            continue
        for record, own in zip(records[1:], states[1:]):
            entry = metric.paired(own[metric.name], baseline, settings) if own.get(metric.name) is not None else None
            if entry:
                record[metric.record_key] = {"baseline": records[0]["label"], **entry}


def paired_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """A record's paired differences as metrics: ``paired/<metric>`` (the difference) and
    ``paired/<metric>/se`` (its paired standard error); undefined ones left out."""
    values = {}
    for metric in registered():
        if metric.record_key in record:
            for name, paired in metric.paired_differences(record[metric.record_key]).items():
                values[f"paired/{name}"] = float(paired["difference"])
                values[f"paired/{name}/se"] = float(paired["standard_error"])
    return {k: v for k, v in values.items() if math.isfinite(v)}


def paired_lines(record: Mapping[str, Any]) -> list[str]:
    """The console lines of a record's paired comparisons."""
    return [line for m in registered() if m.record_key in record
            for line in m.paired_lines(record["label"], record[m.record_key])]


for builtin in (AttributeAccuracyMetric(), RuleReading(), FidKid(), WindowFid(), PromptDiversity(), ClipScores(), NoiseImages()):
    register(builtin)
