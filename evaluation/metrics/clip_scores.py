"""CLIP-score: the image-prompt cosine similarity under the judge and each configured CLIP model."""

from __future__ import annotations

from evaluation.clip_score import ClipScoreConvention, clip_score
from evaluation.metrics.metric import Metric, MetricScores, ScoreInputs


class ClipScores(Metric):
    """``clip_score/<model>`` with its standard error, and its per-image values."""

    name = "clip_score"

    def score(self, inputs: ScoreInputs) -> MetricScores | None:
        config = inputs.scorer.config
        convention = ClipScoreConvention(config.clip_score_weight, config.prompt_prefix)
        scores = MetricScores()
        for label, model in inputs.scorer.text_image_models().items():
            result = clip_score(model, inputs.embeddings(label), inputs.prompts, convention)
            name = f"clip_score/{label}"
            scores.metrics[name], scores.metrics[f"{name}/se"] = result.mean, result.standard_error
            scores.params[name] = result.params
            scores.per_item[name] = result.per_image
        return scores if scores.metrics else None

    def headline(self, name: str) -> bool:
        """Every model's score (an open_clip label is ``model/tag``), not its standard error."""
        return not name.endswith("/se")
