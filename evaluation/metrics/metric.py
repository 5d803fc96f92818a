"""What a metric is: how it scores one setting, compares it with a baseline setting, prints and
is tabulated by ``sweeps.compare``. A new metric is one file with a :class:`Metric` subclass,
registered in :mod:`evaluation.metrics` (docs/evaluation.md, adding a metric).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from evaluation.attributes import AttributeAccuracy, attribute_accuracy
from evaluation.judge import JUDGE
from evaluation.patch_fid import PatchMoments
from evaluation.prompt_sets import CaptionTemplate
from evaluation.rule_reader import read_images

if TYPE_CHECKING:  # the scorer holds the metrics' models; importing it here would be circular
    from evaluation.api import Reference, Scorer


@dataclass
class ScoreInputs:
    """One setting's images and everything a metric may read about them.

    Expensive intermediate values that several metrics need (a CLIP model's image embeddings, the
    judge's attribute verdicts) are computed once, on first use."""

    scorer: Scorer
    pixels: torch.Tensor  # uint8 (N, 3, H, W)
    prompts: Sequence[str]
    reference: Reference | None = None
    attrs: Sequence[Mapping[str, str]] | None = None
    template: CaptionTemplate | None = None
    patches: PatchMoments | None = None  # the reference's window statistics at the images' size
    _embeddings: dict[str, torch.Tensor] = field(default_factory=dict)
    _accuracy: AttributeAccuracy | None = None
    _rule: dict[str, np.ndarray] | None = None

    def embeddings(self, label: str) -> torch.Tensor:
        """Image embeddings of the judge (``label == "judge"``) or of the CLIP model ``label``."""
        if label not in self._embeddings:
            model = self.scorer.judge if label == JUDGE else self.scorer.clip_models[label]
            self._embeddings[label] = model.encode_images(self.pixels, self.scorer.config.batch_size)
        return self._embeddings[label]

    def attribute_accuracy(self) -> AttributeAccuracy | None:
        """The judge's verdict on each prompted attribute of each image; None without ``attrs`` or
        a judge."""
        if self.attrs is None or self.scorer.judge is None:
            return None
        if self._accuracy is None:
            self._accuracy = attribute_accuracy(
                self.embeddings(JUDGE), self.attrs, self.template, self.scorer.judge.encode_texts
            )
        return self._accuracy

    def rule_reading(self) -> dict[str, np.ndarray] | None:
        """The exact rule's verdict on each prompted attribute of each image (the built-in shapes
        world only: ``ScoringConfig.rule_reader``); None without ``attrs`` or a rule."""
        if self.attrs is None or not self.scorer.config.rule_reader:
            return None
        if self._rule is None:
            self._rule = read_images(self.pixels, self.attrs, self.rule_vocabulary())
        return self._rule

    def rule_vocabulary(self) -> dict[str, tuple[str, ...]]:
        """The prompt set's vocabulary per attribute, object suffixes (``_1``, ``_2``) dropped."""
        return {key.rsplit("_", 1)[0] if key[-2:] in ("_1", "_2") else key: tuple(values)
                for key, values in self.template.values.items()}


@dataclass
class MetricScores:
    """One metric's output for one setting.

    ``metrics``: name -> value, with companions ``<name>/se`` or ``<name>/ci_low``/``ci_high``;
    ``params``: name -> its definition; ``per_item``: name -> one value per image; ``state``: what
    :meth:`Metric.paired` needs of this setting (features, verdicts, ...), never written out;
    ``unreliable``: metric names (its own or others') this setting's check found untrustworthy,
    with the ``warnings`` that say why."""

    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, object] = field(default_factory=dict)
    per_item: dict[str, np.ndarray] = field(default_factory=dict)
    state: Any = None
    unreliable: list[str] = field(default_factory=list)  # names of this setting not to be trusted
    warnings: list[str] = field(default_factory=list)  # why, one line each (console and report)


@dataclass(frozen=True)
class PairingSettings:
    """How paired comparisons resample: the evaluation's bootstrap replicates, seed and device."""

    bootstrap: int
    seed: int
    device: str = "cpu"


def z_score(difference: float, standard_error: float) -> float:
    """difference / SE; a difference without spread is infinitely significant when positive."""
    return difference / standard_error if standard_error > 0 else (math.inf if difference > 0 else 0.0)


class Metric:
    """A metric family. Subclasses set ``name`` and implement :meth:`score`; a metric with a paired
    test also sets ``record_key`` (the report record's key of its paired comparison) and
    implements :meth:`paired` and :meth:`paired_lines`."""

    name: str = ""
    prefixes: tuple[str, ...] = ()  # what its logged names start with (``fid``, ``attr_acc/judge``); default (name,)
    record_key: str | None = None

    def score(self, inputs: ScoreInputs) -> MetricScores | None:
        """This setting's values; None when the metric does not apply (no reference, no judge...)."""
        raise NotImplementedError

    def paired(self, own: Any, baseline: Any, settings: PairingSettings) -> dict[str, Any] | None:
        """This setting minus the baseline setting (same prompts and noise), from the two settings'
        :attr:`MetricScores.state`; the record entry without its ``baseline``, or None."""
        return None

    def paired_differences(self, entry: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
        """Metric name -> ``{"difference", "standard_error", ...}`` of a :meth:`paired` entry; these
        go to MLflow as ``paired/<metric>`` and ``paired/<metric>/se`` (read by ``sweeps.compare``)."""
        return dict(entry.get("metrics", {}))

    def paired_lines(self, label: str, entry: Mapping[str, Any]) -> list[str]:
        """The console lines of a paired entry (``entry["baseline"]`` is the baseline's label)."""
        return [
            f"  {label} vs {entry['baseline']}: {metric} {d['difference']:+.4f} ± {d['standard_error']:.4f} "
            f"({self.paired_method(d)}, z={d['z']:.1f})"
            for metric, d in self.paired_differences(entry).items()
        ]

    def paired_method(self, difference: Mapping[str, Any]) -> str:
        """How a paired difference's standard error was estimated, for the console."""
        return "paired SE"

    def headline(self, name: str) -> bool:
        """Whether logged metric ``name`` (one of this metric's, without ``base/``) is a headline of
        ``sweeps.compare``: a column of its table, aggregated over seeds."""
        return name.count("/") == 1
