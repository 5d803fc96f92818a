"""The scoring entry point: images + prompts (+ attributes) in, named metrics with their definitions out.

    scorer = Scorer(ScoringConfig(judge_dir=..., extractors=("judge",)))   # preflight happens here
    reference = scorer.reference(ReferenceSet(...), template=prompt_set.template)
    result = scorer.score(images, prompts, reference, attrs=..., template=...)
    result.metrics   # {"fid/judge": ..., "clip_score/judge": ..., "attr_acc/judge/color": ...}

Metric names carry the model that produced them. Every metric's definition (extractor and weights
hash, CLIP model and tag, score convention, preprocessing and quantisation, counts, bootstrap
settings, seed range) is in ``result.params``; judge metrics are listed in ``result.unreliable``
when the judge fails a validity check (attribute accuracy or caption retrieval on real images).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from evaluation.attributes import attribute_accuracy
from evaluation.clip_model import ClipModel
from evaluation.settings import ScoringConfig
from evaluation.diversity import Diversity, prompt_diversity
from evaluation.features import extract_features, load_extractor, resolve_extractor
from evaluation.quantisation import POLICY, to_uint8
from evaluation.judge import JUDGE, Validity
from evaluation.metrics import ScoreInputs, registered
from evaluation.patch_fid import MAX_GROUPS, PATCH_SIZE, PatchAccumulator, PatchMoments
from evaluation.preflight import Plan, preflight
from evaluation.prompt_sets import CaptionTemplate
from evaluation.refstats import ReferenceCache, ReferenceFeatures, ReferenceKey
from evaluation.retrieval import caption_retrieval
from evaluation.roughness import roughness

Batch = Mapping[str, object]


@dataclass(frozen=True)
class ReferenceSet:
    """Real images to compare against, described well enough to cache their features.

    ``fingerprint``: the dataset's config (with its renderer/data version); ``batches()`` yields
    data batches ``{"image": (B, 3, H, W) float in [-1, 1] or uint8, "attrs": {name: [...]}}``
    and is called only when some extractor's features are not cached.
    """

    fingerprint: Mapping[str, object]
    split: str
    resolution: int
    n: int
    batches: Callable[[], Iterable[Batch]]


@dataclass(frozen=True)
class Reference:
    features: dict[str, ReferenceFeatures]
    validity: Validity | None
    resolution: int  # of the reference images (square): the noise share compares at this size
    # The judge's per-caption diversity of the real images (needs their attrs and the template).
    diversity: Diversity | None = None

    @property
    def roughness(self) -> torch.Tensor | None:
        """Per reference image (the same in every extractor's cache entry); None without features."""
        return next(iter(self.features.values())).roughness if self.features else None


@dataclass
class ScoreResult:
    metrics: dict[str, float]
    params: dict[str, object]
    per_item: dict[str, np.ndarray] = field(default_factory=dict)
    validity: Validity | None = None
    # What each metric's paired test needs of these images (features, verdicts, ...), by metric
    # name: paired comparisons of two settings on the same prompts and noise.
    states: dict[str, object] = field(default_factory=dict)
    # Metrics a check of these images found untrustworthy (e.g. the judge disagreeing with the
    # rule reader on an attribute), and why.
    distrusted: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def unreliable(self) -> list[str]:
        """Judge metrics, when the judge failed its validity threshold, and the distrusted ones."""
        failed = self.validity is not None and not self.validity.reliable
        return [name for name in self.metrics if (failed and f"/{JUDGE}" in name) or name in self.distrusted]


def _rows(attrs: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
    """Column-wise batch attrs {name: [values]} -> one dict per image."""
    names = list(attrs)
    return [dict(zip(names, values)) for values in zip(*(attrs[name] for name in names))]


def _data_diversity(features: dict[str, ReferenceFeatures], template: CaptionTemplate | None) -> Diversity | None:
    """The judge's diversity of the real images that share a caption (rendered from their attrs)."""
    judge = features.get(JUDGE)
    if judge is None or not judge.attrs or template is None:
        return None
    return prompt_diversity(judge.features, [template.render(row) for row in _rows(judge.attrs)])


class Scorer:
    """Holds the loaded models so several settings of one evaluation reuse them."""

    def __init__(self, config: ScoringConfig, plan: Plan | None = None) -> None:
        self.config = config
        self.plan = plan if plan is not None else preflight(config)
        self.judge = ClipModel(self.plan.judge, config.device) if self.plan.judge is not None else None
        self.clip_models = {label: ClipModel(r, config.device) for label, r in self.plan.clip_models.items()}
        self._networks = {
            name: load_extractor(e, config.device) for name, e in self.plan.extractors.items() if name != JUDGE
        }
        # Reference features also for the judge when it only scores prompts: its validity needs them.
        self._reference_extractors = dict(self.plan.extractors)
        if self.judge is not None and JUDGE not in self._reference_extractors:
            self._reference_extractors[JUDGE] = resolve_extractor(JUDGE, judge_dir=config.judge_dir)
        self.cache = ReferenceCache(config.cache_dir)

    def features(self, name: str, images: torch.Tensor) -> torch.Tensor:
        """Features of uint8 images from extractor ``name``."""
        if name == JUDGE:
            return self.judge.encode_images(images, self.config.batch_size)
        return extract_features(self._networks[name], images, self.config.batch_size)

    def text_image_models(self) -> dict[str, ClipModel]:
        """The judge (as ``judge``) and each CLIP model, by label: what CLIP-score and diversity use."""
        return ({JUDGE: self.judge} if self.judge is not None else {}) | self.clip_models

    def reference(self, reference: ReferenceSet, template: CaptionTemplate | None = None) -> Reference:
        """Reference features per extractor (cached), and the judge's validity on them."""
        keys = {
            name: ReferenceKey(
                dict(reference.fingerprint),
                reference.split,
                reference.resolution,
                e.fidelity_name + ":" + e.layer,
                e.weights_sha256,
                e.preprocessing,
                POLICY.as_params(),
                reference.n,
            )
            for name, e in self._reference_extractors.items()
        }
        missing = [name for name, key in keys.items() if not self.cache.path(key).is_file()]
        computed = self._reference_features(reference, missing) if missing else {}
        features = {name: self.cache.load_or_compute(key, lambda n=name: computed[n]) for name, key in keys.items()}
        validity = self._validity(reference, features, template)
        return Reference(features, validity, reference.resolution, _data_diversity(features, template))

    def patch_reference(self, reference: ReferenceSet) -> PatchMoments:
        """The reference images' window statistics for patch FID (cached); ``reference`` rendered
        at the size of the images it will be compared with."""
        key = ReferenceKey(
            dict(reference.fingerprint),
            reference.split,
            reference.resolution,
            f"pixel-windows:{PATCH_SIZE}",
            "none",
            f"channel-centred windows, stride 1, up to {MAX_GROUPS} groups of images",
            POLICY.as_params(),
            reference.n,
        )

        def compute() -> PatchMoments:
            accumulator = PatchAccumulator(reference.n)
            for batch in reference.batches():
                accumulator.add(to_uint8(batch["image"], "reference images")[0])
            return accumulator.moments()

        return self.cache.load_or_compute_patches(key, compute)

    def _reference_features(
        self, reference: ReferenceSet, names: list[str]
    ) -> dict[str, tuple[torch.Tensor, dict[str, list] | None, torch.Tensor, list[str] | None]]:
        """One pass over the reference batches for every extractor in ``names``; also collects
        attrs, captions and each image's roughness."""
        chunks: dict[str, list[torch.Tensor]] = {name: [] for name in names}
        attrs: dict[str, list] = {}
        texts: list[str] = []
        roughness_chunks: list[torch.Tensor] = []
        for batch in reference.batches():
            images, _ = to_uint8(batch["image"], "reference images")
            roughness_chunks.append(roughness(images))
            for name in names:
                chunks[name].append(self.features(name, images))
            for attr, values in dict(batch.get("attrs") or {}).items():
                attrs.setdefault(attr, []).extend(values)
            texts.extend(batch.get("text") or [])
        reference_roughness = torch.cat(roughness_chunks)
        captions = texts if len(texts) == len(reference_roughness) else None
        return {name: (torch.cat(chunks[name]), attrs or None, reference_roughness, captions) for name in names}

    def _validity(
        self, reference: ReferenceSet, features: dict[str, ReferenceFeatures], template: CaptionTemplate | None
    ) -> Validity | None:
        """The judge's checks on the real reference images: attribute accuracy (with a template)
        and caption retrieval (with captions)."""
        if self.judge is None:
            return None
        judge = features[JUDGE]
        accuracy: dict[str, float] = {}
        if template is not None:
            if not judge.attrs:
                raise ValueError(f"judge validity needs attrs in the {reference.split} batches; none were given")
            accuracy = attribute_accuracy(judge.features, _rows(judge.attrs), template, self.judge.encode_texts).per_attribute()
        retrieval = None
        if judge.texts:
            retrieval = caption_retrieval(judge.features, judge.texts, self.judge.encode_texts,
                                          threshold=self.config.retrieval_threshold, seed=self.config.seed)
        if not accuracy and retrieval is None:
            return None
        return Validity(accuracy, len(judge.features), self.config.validity_threshold, retrieval)

    def score(
        self,
        images: torch.Tensor,
        prompts: Sequence[str],
        reference: Reference | None = None,
        *,
        attrs: Sequence[Mapping[str, str]] | None = None,
        template: CaptionTemplate | None = None,
        seeds: Sequence[int] | None = None,
        patches: PatchMoments | None = None,
    ) -> ScoreResult:
        """Score generated ``images`` (float [-1, 1] or uint8) made from ``prompts``.

        ``patches``: the reference's window statistics at the images' size
        (:meth:`patch_reference`), for ``patch_fid``.

        Each registered metric (:mod:`evaluation.metrics`) adds what applies to these inputs;
        ``attrs`` + ``template`` add attribute accuracy named ``attr_acc/judge/<attribute>``; its
        protocol (zero-shot choice among the attribute's values for one object, caption retrieval
        against one-attribute-swapped captions for several) is in ``params``.
        """
        start = time.perf_counter()
        if len(prompts) != len(images):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        if attrs is not None and template is None:
            raise ValueError("reading attributes needs the prompt set's template")
        pixels, clamped = to_uint8(images, "generated images")
        metrics: dict[str, float] = {}
        params: dict[str, object] = {
            "images": {**POLICY.as_params(), "clamped_fraction": clamped, "n_images": len(images),
                       "height": int(images.shape[-2]), "width": int(images.shape[-1])},
            **self.plan.params,
        }
        if seeds is not None:
            params["images"]["seed_range"] = [int(min(seeds)), int(max(seeds))]
        per_item: dict[str, np.ndarray] = {}
        inputs = ScoreInputs(self, pixels, prompts, reference, attrs, template, patches)
        states: dict[str, object] = {}
        distrusted: list[str] = []
        warnings: list[str] = []
        for metric in registered():
            scores = metric.score(inputs)
            if scores is not None:
                metrics.update(scores.metrics)
                params.update(scores.params)
                per_item.update(scores.per_item)
                states[metric.name] = scores.state
                distrusted += scores.unreliable
                warnings += scores.warnings
        metrics["cost/score_seconds"] = time.perf_counter() - start
        validity = reference.validity if reference is not None else None
        return ScoreResult(metrics, params, per_item, validity, states, distrusted, warnings)
