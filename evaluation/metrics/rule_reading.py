"""Two readings of the prompted attributes: the exact rule's (``attr_acc/rule/<attribute>``, on
the built-in shapes world) beside the judge's, and how often the two agree on the generated
images (``judge_agreement/<attribute>``). The judge is validated on real images; agreement is its
check on generated ones: below the validity threshold, the judge's number for that attribute and
setting is marked unreliable, with a warning."""

from __future__ import annotations

import numpy as np

from evaluation.attributes import AttributeAccuracy
from evaluation.judge import JUDGE
from evaluation.metrics.attribute_accuracy import VerdictAccuracy, share_right
from evaluation.metrics.metric import MetricScores, ScoreInputs
from evaluation.rule_reader import illegible

PREFIX = "attr_acc/rule"
AGREEMENT = "judge_agreement"


class RuleReading(VerdictAccuracy):
    name = "rule_reading"
    prefix = PREFIX
    prefixes = (PREFIX, AGREEMENT)
    record_key = "paired_rule_vs_first"
    reading = "attribute accuracy (rule)"

    def verdicts(self, inputs: ScoreInputs) -> dict[str, np.ndarray] | None:
        return inputs.rule_reading()

    def definition(self, inputs: ScoreInputs) -> dict[str, object]:
        return {"reader": "exact pixel rule of the built-in shapes world (evaluation.rule_reader)",
                "n_images": len(inputs.attrs)}

    def score(self, inputs: ScoreInputs) -> MetricScores | None:
        scores = super().score(inputs)
        if scores is None:
            return None
        rule = inputs.rule_reading()
        unread = illegible(inputs.rule_vocabulary(), inputs.pixels.shape[-1])
        if unread:  # reported, but out of the mean and of the paired test
            kept = {name: flags for name, flags in rule.items() if name not in unread}
            scores.metrics[f"{PREFIX}/mean"] = AttributeAccuracy(kept).mean
            scores.state = share_right(kept)
            scores.params[PREFIX]["not_in_mean"] = unread
        judge = inputs.attribute_accuracy()
        if judge is None:
            return scores
        threshold = inputs.scorer.config.validity_threshold
        for name in [n for n in rule if n in judge.correct and n not in unread]:
            agreement = float(np.mean(judge.correct[name] == rule[name]))
            scores.metrics[f"{AGREEMENT}/{name}"] = agreement
            if agreement < threshold:
                scores.unreliable += [f"attr_acc/{JUDGE}/{name}", f"attr_acc/{JUDGE}/mean"]
                scores.warnings.append(
                    f"the judge agrees with the rule reader on {name} in {agreement:.3f} of the generated images "
                    f"(below {threshold}): attr_acc/{JUDGE}/{name} is not to be trusted here; the rule reads "
                    f"{rule[name].mean():.3f}"
                )
        scores.params[AGREEMENT] = {
            "definition": "share of the generated images on which the judge's verdict equals the rule's",
            "threshold": threshold,
        }
        return scores

    def headline(self, name: str) -> bool:
        return name == f"{PREFIX}/mean" or name.startswith(f"{AGREEMENT}/")
