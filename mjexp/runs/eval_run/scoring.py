"""Everything scoring needs, resolved before any image is generated: the data, the judge, the
scorer and the reference statistics with the judge's validity."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from omegaconf import DictConfig, OmegaConf

from evaluation import ReferenceSet, Scorer, ScoringConfig
from evaluation.attributes import holdout_accuracy
from evaluation.patch_fid import PatchMoments
from mjexp.runs.components import build_datamodule, train_or_reuse_domain_clip
from mjexp.runs.eval_run.judge_independence import check_judge_independence

RULE_READABLE_DATA = "shapes"  # the data whose generated images evaluation.rule_reader reads exactly


def reference_batches(datamodule: Any, split: str) -> Iterator[dict[str, Any]]:
    yield from datamodule.dataloader(split)


def missing_patch_reference(height: int, width: int, resolution: int, native_size: float) -> str | None:
    """Why patch FID has no reference for ``height`` x ``width`` images of data at ``resolution``
    px whose reference images exist up to ``native_size`` px without upscaling, or None when it has one."""
    if height == width and (height == resolution or height <= native_size):
        return None
    why = "the data is square" if height != width else (
        f"the reference images exist up to {native_size:g} px without upscaling (data resolution {resolution}); "
        "an image folder with larger originals has references up to their size"
    )
    return f"no reference at {height}x{width} px: {why}"


def train_or_reuse_judge(cfg: DictConfig, datamodule: Any, conditioning: str | Path | None) -> Path:
    """The judge's folder: ``eval.judge``, a domain CLIP trained on the ``judge`` split of
    ``datamodule`` (now, or reused from its cache), checked to be independent of the model's
    ``conditioning`` domain CLIP folder (when it has one)."""
    print("Judge: domain CLIP on the judge split (trained now, or reused from the cache)...")
    judge_dir = train_or_reuse_domain_clip(cfg.eval.judge, datamodule, split="judge")
    if conditioning:
        check_judge_independence(judge_dir, Path(conditioning))
    return judge_dir


class ScoringContext:
    """Everything scoring needs, resolved before any image is generated (the preflight).

    The data (for the judge's split and the reference split), the judge (trained or reused), the
    scorer with its extractors and weights, and the reference statistics with the judge's validity.
    """

    def __init__(self, cfg: DictConfig, data_cfg: Mapping[str, Any], template: Any, conditioning: str | None = None):
        data_cfg = OmegaConf.create(dict(data_cfg))
        self.resolution = int(data_cfg.resolution)
        holdout = data_cfg.get("holdout") or []
        self.holdout = [dict(entry) for entry in OmegaConf.to_container(holdout)] if holdout else []
        self.datamodule = build_datamodule(data_cfg)
        self.template = template
        judge_dir = train_or_reuse_judge(cfg, self.datamodule, conditioning) if cfg.eval.judge.enabled else None
        if judge_dir is None:
            print("Judge off (eval.judge.enabled=false): no judge metrics.")
        self.scorer = Scorer(
            ScoringConfig(
                extractors=tuple(cfg.eval.features),
                judge_dir=str(judge_dir) if judge_dir else None,
                weights_paths=dict(cfg.eval.weights_paths),
                clip_models=tuple(tuple(m) for m in cfg.eval.clip_models),
                clip_score_weight=cfg.eval.clip_score_weight,
                prompt_prefix=cfg.eval.prompt_prefix,
                allow_network=cfg.eval.allow_download,
                bootstrap=cfg.eval.bootstrap,
                retrieval_threshold=cfg.eval.judge_retrieval_threshold,
                seed=cfg.eval.seed,
                batch_size=cfg.eval.batch_size,
                device=cfg.eval.device,
                cache_dir=cfg.eval.cache_dir,
                rule_reader=data_cfg.name == RULE_READABLE_DATA,
            )
        )
        self.data_cfg, self.split = data_cfg, cfg.eval.reference_split
        self.reference = self.scorer.reference(self.reference_set(self.datamodule), template=template)
        if self.reference.validity is not None:
            print(self.reference.validity.describe(self.split))
            print("On generated images the judge is checked against the exact rule reader (judge_agreement/*)."
                  if self.scorer.config.rule_reader else
                  f"No rule reader exists for data={data_cfg.name}: the judge's verdicts on generated images are "
                  "unchecked (its validity above is on real images only).")
        self._patch_references: dict[int, PatchMoments] = {}

    def reference_set(self, datamodule: Any) -> ReferenceSet:
        """The reference split of ``datamodule`` (the data at its own resolution)."""
        split = self.split
        return ReferenceSet(
            fingerprint=datamodule.fingerprint(split),
            split=split,
            resolution=datamodule.resolution,
            n=len(datamodule.dataset(split)),
            batches=lambda: reference_batches(datamodule, split),
        )

    def patch_reference(self, size: int) -> PatchMoments:
        """The reference's window statistics at ``size`` px (patch FID): the reference split itself
        at the data's resolution, else the same split made at ``size`` from its originals (only up to
        their size: :func:`missing_patch_reference`)."""
        if size not in self._patch_references:
            datamodule = self.datamodule
            if size != self.resolution:
                print(f"Patch FID reference: the {self.split} split made at {size} px")
                datamodule = build_datamodule(OmegaConf.merge(self.data_cfg, {"resolution": size}))
            self._patch_references[size] = self.scorer.patch_reference(self.reference_set(datamodule))
        return self._patch_references[size]

    def score(self, images: torch.Tensor, prompts: list[str], attrs: list[dict] | None, seeds: list[int] | None = None):
        """Scores; when the generator's data held attribute combinations out of training, attribute
        accuracy of single-object prompts is also split into held-out and seen prompts
        (``attr_acc/judge/heldout/...``)."""
        height, width = images.shape[-2:]
        missing = missing_patch_reference(height, width, self.resolution, self.datamodule.native_size(self.split))
        patches = None if missing else self.patch_reference(height)
        result = self.scorer.score(
            images, prompts, self.reference, attrs=attrs, template=self.template if attrs else None, seeds=seeds,
            patches=patches,
        )
        if missing:
            result.params["patch_fid"] = {"not_reported": missing}
        prefix = "attr_acc/judge/"
        correct = {k[len(prefix):]: v for k, v in result.per_item.items() if k.startswith(prefix)}
        if attrs and self.holdout and correct and not self.template.multi_object:
            result.metrics.update(holdout_accuracy(correct, attrs, self.holdout, prefix.rstrip("/")))
        return result
