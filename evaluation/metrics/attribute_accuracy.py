"""Attribute accuracy: how often the judge finds each prompted attribute (colour, shape, position)
in the image; paired per image against the baseline setting, with the images it fixed and broke."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from evaluation.attributes import AttributeAccuracy, paired_difference
from evaluation.judge import JUDGE
from evaluation.metrics.metric import Metric, MetricScores, PairingSettings, ScoreInputs, z_score

PREFIX = f"attr_acc/{JUDGE}"


def verdict_changes(baseline: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of images (same prompt and noise) with every attribute right in ``other`` but not in
    ``baseline`` (fixed), and the reverse (broken): a paired gain is only real if fixed > broken."""
    base_ok, other_ok = np.asarray(baseline) == 1.0, np.asarray(other) == 1.0
    return np.flatnonzero(~base_ok & other_ok), np.flatnonzero(base_ok & ~other_ok)


def share_right(correct: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per image, the fraction of its attributes found as prompted (what the paired test compares)."""
    return np.mean([np.asarray(v, dtype=np.float64) for v in correct.values()], axis=0)


class VerdictAccuracy(Metric):
    """Accuracy of per-image, per-attribute verdicts under ``prefix`` (``<prefix>/<attribute>``,
    ``<prefix>/mean``), paired image by image; state: per image, the fraction of its attributes
    found as prompted. Subclasses say whose verdicts (:meth:`verdicts`)."""

    prefix = PREFIX
    reading = "attribute accuracy"  # how its paired line names it

    def verdicts(self, inputs: ScoreInputs) -> dict[str, np.ndarray] | None:
        raise NotImplementedError

    def definition(self, inputs: ScoreInputs) -> dict[str, object]:
        raise NotImplementedError

    def score(self, inputs: ScoreInputs) -> MetricScores | None:
        correct = self.verdicts(inputs)
        if correct is None:
            return None
        return MetricScores(
            AttributeAccuracy(correct).metrics(self.prefix), {self.prefix: self.definition(inputs)},
            {f"{self.prefix}/{name}": verdict for name, verdict in correct.items()}, state=share_right(correct),
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
        return {f"{self.prefix}/mean": entry}

    def paired_lines(self, label: str, entry: Mapping[str, Any]) -> list[str]:
        return [f"  {label} vs {entry['baseline']}: {self.reading} {entry['difference']:+.3f} "
                f"± {entry['standard_error']:.3f} (paired SE, z={entry['z']:.1f}); all attributes right in "
                f"{entry['fixed']} images only here, in {entry['broken']} only in the baseline"]

    def headline(self, name: str) -> bool:
        return name == f"{self.prefix}/mean"


class AttributeAccuracyMetric(VerdictAccuracy):
    """``attr_acc/judge/<attribute>`` and ``/mean``: the judge's zero-shot verdicts."""

    name = "attr_acc"
    prefixes = (PREFIX,)
    record_key = "paired_vs_first"

    def verdicts(self, inputs: ScoreInputs) -> dict[str, np.ndarray] | None:
        accuracy = inputs.attribute_accuracy()
        return None if accuracy is None else accuracy.correct

    def definition(self, inputs: ScoreInputs) -> dict[str, object]:
        protocol = (
            "caption retrieval against one-attribute-swapped captions" if inputs.template.multi_object
            else "zero-shot choice among the attribute's values"
        )
        return {"template": inputs.template.template, "protocol": protocol, "judge": inputs.scorer.judge.params,
                "n_images": len(inputs.attrs)}
