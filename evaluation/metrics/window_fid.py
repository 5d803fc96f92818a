"""Patch FID: the Fréchet distance of small pixel windows, which sees texture and noise that
whole-image features miss; paired against the baseline setting over the items."""

from __future__ import annotations

from typing import Any, Mapping

from evaluation.metrics.metric import Metric, MetricScores, PairingSettings, ScoreInputs
from evaluation.patch_fid import PatchMoments, patch_fid, patch_fid_difference, patch_moments

NAME = "patch_fid"


class WindowFid(Metric):
    """``patch_fid`` when the reference has window statistics at the images' size; state: the
    generated images' window statistics and the reference's."""

    name = NAME
    record_key = "paired_patch_fid_vs_first"

    def score(self, inputs: ScoreInputs) -> MetricScores | None:
        if inputs.patches is None:
            return None
        config = inputs.scorer.config
        generated = patch_moments(inputs.pixels)
        result = patch_fid(generated, inputs.patches, config.bootstrap, config.seed, config.level)
        metrics = {NAME: result.value, f"{NAME}/ci_low": result.interval.low, f"{NAME}/ci_high": result.interval.high}
        return MetricScores(metrics, {NAME: result.params}, state=(generated, inputs.patches))

    def paired(
        self, own: tuple[PatchMoments, PatchMoments], baseline: tuple[PatchMoments, PatchMoments],
        settings: PairingSettings,
    ) -> dict[str, Any] | None:
        """Only between settings with window statistics at one size (not a hires setting against a plain one)."""
        (generated, reference), (base, _) = own, baseline
        if generated.size != base.size or generated.n_images != base.n_images:
            return None
        paired = patch_fid_difference(generated, base, reference, settings.bootstrap, settings.seed)
        z = paired.difference / paired.standard_error if paired.standard_error > 0 else 0.0
        return {**paired.as_params(), "z": z}

    def paired_differences(self, entry: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
        return {NAME: entry}

    def paired_method(self, difference: Mapping[str, Any]) -> str:
        return "paired bootstrap SE"

    def headline(self, name: str) -> bool:
        return name == NAME
