"""What an evaluation computes, validated at construction with one message naming the bad key."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ScoringConfig:
    """Scoring settings. Defaults need nothing from outside: the judge only.

    ``extractors``: FID/KID feature extractors (``inception``, ``judge``, ``clip-*``, ``dinov2-*``).
    ``weights_paths``: extractor name -> local weight file (e.g. ``{"inception": "/path/weights.pth"}``).
    ``clip_models``: (open_clip model name, pretrained tag or file) pairs scored with CLIP-score,
    besides the judge. ``clip_score_weight`` / ``prompt_prefix``: 100 and "" (torchmetrics' scale)
    or 2.5 and "A photo depicts " (Hessel et al.). ``rule_reader``: the data is the built-in shapes
    world, whose generated images an exact rule reads (``attr_acc/rule``, ``judge_agreement``).
    """

    extractors: tuple[str, ...] = ("judge",)
    judge_dir: str | None = None
    weights_paths: dict[str, str] = field(default_factory=dict)
    inception_layer: str = "2048"
    clip_models: tuple[tuple[str, str], ...] = ()
    clip_score_weight: float = 100.0
    prompt_prefix: str = ""
    allow_network: bool = False
    bootstrap: int = 200
    level: float = 0.95
    seed: int = 0
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    validity_threshold: float = 0.95  # the judge's attribute accuracy on real images
    retrieval_threshold: float = 0.5  # the judge's caption retrieval top-1 on real images (chance 1/32)
    rule_reader: bool = False
    batch_size: int = 64
    device: str = "cpu"
    cache_dir: str = ".cache/evaluation"

    def __post_init__(self) -> None:
        rules = (
            ("bootstrap", self.bootstrap >= 10, ">= 10"),
            ("level", 0.0 < self.level < 1.0, "in (0, 1)"),
            ("kid_subsets", self.kid_subsets >= 1, ">= 1"),
            ("kid_subset_size", self.kid_subset_size >= 2, ">= 2"),
            ("validity_threshold", 0.0 <= self.validity_threshold <= 1.0, "in [0, 1]"),
            ("retrieval_threshold", 0.0 <= self.retrieval_threshold <= 1.0, "in [0, 1]"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("clip_score_weight", self.clip_score_weight > 0, "> 0"),
        )
        for key, ok, allowed in rules:
            if not ok:
                raise ValueError(f"evaluation config: {key}={getattr(self, key)!r} must be {allowed}")
        if len(set(self.extractors)) != len(self.extractors):
            raise ValueError(f"evaluation config: extractors={list(self.extractors)} has duplicates")
        unused = set(self.weights_paths) - set(self.extractors)
        if unused:
            raise ValueError(f"evaluation config: weights_paths for {sorted(unused)} not in extractors {list(self.extractors)}")
        if "judge" in self.extractors and self.judge_dir is None:
            raise ValueError("evaluation config: extractors include 'judge' but judge_dir is not set")
