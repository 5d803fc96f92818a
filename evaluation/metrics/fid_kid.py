"""FID and KID per feature extractor (Inception, the judge, ...), with bootstrap intervals; paired
against the baseline setting by the paired bootstrap of the FID difference."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from evaluation.bootstrap import fid_difference
from evaluation.distribution import distribution_metrics
from evaluation.judge import JUDGE
from evaluation.metrics.metric import Metric, MetricScores, PairingSettings, ScoreInputs

# Per extractor: the generated images' features (row i = image i), the reference's, the rank bound.
FeatureState = dict[str, tuple[torch.Tensor, torch.Tensor, int | None]]


class FidKid(Metric):
    """``fid/<extractor>`` and ``kid/<extractor>`` against the reference set."""

    name = "fid"
    prefixes = ("fid", "kid")
    record_key = "paired_fid_vs_first"

    def score(self, inputs: ScoreInputs) -> MetricScores | None:
        if inputs.reference is None:
            return None
        scorer, config = inputs.scorer, inputs.scorer.config
        scores = MetricScores(state={})
        for name, extractor in scorer.plan.extractors.items():
            generated = inputs.embeddings(JUDGE) if name == JUDGE else scorer.features(name, inputs.pixels)
            reference = inputs.reference.features[name].features
            values, definitions = distribution_metrics(
                generated, reference, extractor.name, bootstrap=config.bootstrap, seed=config.seed,
                level=config.level, kid_subsets=config.kid_subsets, kid_subset_size=config.kid_subset_size,
                device=config.device, feature_rank=extractor.feature_rank,
            )
            scores.metrics.update(values)
            scores.params.update({key: {**value, **extractor.params} for key, value in definitions.items()})
            scores.state[name] = (generated, reference, extractor.feature_rank)
        return scores

    def paired(self, own: FeatureState, baseline: FeatureState, settings: PairingSettings) -> dict[str, Any] | None:
        """FID(setting) - FID(baseline) per extractor. Hires settings pair with plain ones: features
        do not depend on the image size."""
        paired = {}
        for name, (features, reference, rank) in own.items():
            if name not in baseline or features.shape != baseline[name][0].shape:
                continue
            result = fid_difference(features, baseline[name][0], reference, settings.bootstrap, settings.seed,
                                    device=settings.device, feature_rank=rank)
            z = result.difference / result.standard_error if result.standard_error > 0 else 0.0
            paired[f"fid/{name}"] = {**result.as_params(), "z": z}
        return {"metrics": paired} if paired else None

    def paired_method(self, difference: Mapping[str, Any]) -> str:
        return "paired bootstrap SE"
