"""Attribute accuracy: how often the judge finds each prompted attribute (colour, shape, position)
in the image; paired per image against the baseline setting, with the images it fixed and broke."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from evaluation.attributes import paired_difference
from evaluation.judge import JUDGE
from evaluation.metrics.base import Metric, MetricScores, PairingSettings, ScoreInputs, z_score

PREFIX = f"attr_acc/{JUDGE}"


def verdict_changes(baseline: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of images (same prompt and noise) with every attribute right in ``other`` but not in
    ``baseline`` (fixed), and the reverse (broken): a paired gain is only real if fixed > broken."""
    base_ok, other_ok = np.asarray(baseline) == 1.0, np.asarray(other) == 1.0
    return np.flatnonzero(~base_ok & other_ok), np.flatnonzero(base_ok & ~other_ok)


class AttributeAccuracyMetric(Metric):
    """``attr_acc/judge/<attribute>`` and ``/mean``; state: per image, the fraction of its
    attributes found as prompted."""

    name = "attr_acc"
    record_key = "paired_vs_first"

    def score(self, inputs: ScoreInputs) -> MetricScores | None:
        accuracy = inputs.attribute_accuracy()
        if accuracy is None:
            return None
        protocol = (
            "caption retrieval against one-attribute-swapped captions" if inputs.template.multi_object
            else "zero-shot choice among the attribute's values"
        )
        params = {"template": inputs.template.template, "protocol": protocol, "judge": inputs.scorer.judge.params,
                  "n_images": len(inputs.attrs)}
        flags = np.mean([np.asarray(v, dtype=np.float64) for v in accuracy.correct.values()], axis=0)
        return MetricScores(
            accuracy.metrics(PREFIX), {PREFIX: params},
            {f"{PREFIX}/{name}": correct for name, correct in accuracy.correct.items()}, state=flags,
        )

    def paired(self, own: np.ndarray, baseline: np.ndarray, settings: PairingSettings) -> dict[str, Any]:
        difference, standard_error = paired_difference(own, baseline)
        fixed, broken = verdict_changes(baseline, own)
        return {
            "metric": "mean attribute accuracy per image",
            "difference": difference,
            "standard_error": standard_error,
            "z": z_score(difference, standard_error),
            "fixed": int(fixed.size),
            "broken": int(broken.size),
        }

    def paired_differences(self, entry: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
        return {f"{PREFIX}/mean": entry}

    def paired_lines(self, label: str, entry: Mapping[str, Any]) -> list[str]:
        return [f"  {label} vs {entry['baseline']}: attribute accuracy {entry['difference']:+.3f} "
                f"± {entry['standard_error']:.3f} (paired SE, z={entry['z']:.1f}); all attributes right in "
                f"{entry['fixed']} images only here, in {entry['broken']} only in the baseline"]

    def headline(self, name: str) -> bool:
        return name.count("/") == 1 or (name.count("/") == 2 and name.endswith("/mean"))
