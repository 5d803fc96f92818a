"""Noise share: the fraction of generated images rougher than any real image (pure noise, a
sampler's failure), so that image metrics of noise are not read as the model's."""

from __future__ import annotations

from evaluation.metrics.metric import Metric, MetricScores, ScoreInputs
from evaluation.roughness import noise_share

NAME = "noise_share"


class NoiseImages(Metric):
    """``noise_share`` with its standard error, when the reference images' roughness is known."""

    name = NAME

    def score(self, inputs: ScoreInputs) -> MetricScores | None:
        reference = inputs.reference
        if reference is None or reference.roughness is None:
            return None
        noise = noise_share(inputs.pixels, reference.roughness, (reference.resolution, reference.resolution))
        metrics = {} if noise.value is None else {NAME: noise.value, f"{NAME}/se": noise.standard_error}
        return MetricScores(metrics, {NAME: noise.params})

    def headline(self, name: str) -> bool:
        return name == NAME
