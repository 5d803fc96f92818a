"""Per-prompt diversity: how different the images of one prompt are, under the judge and each CLIP
model; also among faithful images only and, for reference, among the real images of one caption."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from evaluation.diversity import Diversity, paired_diversity_difference, prompt_diversity
from evaluation.judge import JUDGE
from evaluation.metrics.metric import Metric, MetricScores, PairingSettings, ScoreInputs, z_score


def put(scores: MetricScores, name: str, diversity: Diversity, definition: Mapping[str, object]) -> None:
    """``name`` and ``name/se`` into the metrics, the definition into the params."""
    scores.metrics[name] = diversity.mean
    scores.metrics[f"{name}/se"] = diversity.standard_error
    scores.params[name] = {**diversity.params, **definition}


class PromptDiversity(Metric):
    """``diversity/<model>``, ``diversity/judge/faithful`` (images with every attribute right) and
    ``diversity/judge/data``; state: the generated images' diversities by metric name."""

    name = "diversity"
    record_key = "paired_diversity_vs_first"

    def score(self, inputs: ScoreInputs) -> MetricScores | None:
        scores = MetricScores(state={})
        for label, model in inputs.scorer.text_image_models().items():
            diversity = prompt_diversity(inputs.embeddings(label), inputs.prompts)
            if diversity is not None:
                scores.state[f"diversity/{label}"] = diversity
                put(scores, f"diversity/{label}", diversity, {"model": model.params})
        reference = inputs.reference
        if reference is not None and reference.diversity is not None and f"diversity/{JUDGE}" in scores.metrics:
            put(scores, f"diversity/{JUDGE}/data", reference.diversity, {"grouped_by": "caption of the real images"})
        accuracy = inputs.attribute_accuracy()
        if accuracy is not None:
            faithful = np.logical_and.reduce(list(accuracy.correct.values()))
            diversity = prompt_diversity(
                inputs.embeddings(JUDGE)[torch.from_numpy(faithful)], [p for p, ok in zip(inputs.prompts, faithful) if ok]
            )
            if diversity is not None:
                scores.state[f"diversity/{JUDGE}/faithful"] = diversity
                definition = {"images": "only those with every attribute right (attr_acc/judge)"}
                put(scores, f"diversity/{JUDGE}/faithful", diversity, definition)
        return scores if scores.metrics else None

    def paired(
        self, own: Mapping[str, Diversity], baseline: Mapping[str, Diversity], settings: PairingSettings
    ) -> dict[str, Any] | None:
        """Over the prompts both measured (for ``.../faithful``, those with 2+ faithful images in both)."""
        paired = {}
        for metric, base in baseline.items():
            if metric not in own or len(set(base.groups) & set(own[metric].groups)) < 2:
                continue
            difference, standard_error, n_prompts = paired_diversity_difference(own[metric], base)
            paired[metric] = {"difference": difference, "standard_error": standard_error, "n_prompts": n_prompts,
                              "z": z_score(difference, standard_error)}
        return {"metrics": paired} if paired else None

    def paired_method(self, difference: Mapping[str, Any]) -> str:
        return f"paired SE over {difference['n_prompts']} prompts"

    def headline(self, name: str) -> bool:
        """Every model's diversity (an open_clip label is ``model/tag``) and the faithful images'
        one; not the real data's level or a standard error."""
        return not name.endswith(("/data", "/se"))
