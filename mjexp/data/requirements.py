"""What a run needs from its data, checked before anything is trained.

Small data (a folder of a few hundred images) used to fail one requirement at a time, each after
minutes of training: a batch larger than a split, then a judge split too small, then a reference
split too small for FID. Here every requirement that depends only on the data and the config is
checked at once, before the first encoder, judge or model is trained, and one error lists each
unmet requirement with its numbers and the keys that fix it. Batch sizes larger than the split a
component trains on are not errors: the component trains on the whole split in one batch
(:func:`mjexp.data.datamodule.fitted_batch_size`), and one line says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from omegaconf import DictConfig

from mjexp.data.datamodule import fitted_batch_size

# Feature dimension of the FID extractors whose size is known without loading them (the judge's is
# its eval.judge.embed_dim); FID needs at least dimension + 1 images in each set.
KNOWN_FEATURE_DIMS = {"inception": 2048}
MIN_CONTRASTIVE_BATCH = 2  # a CLIP's contrastive loss needs a second caption to tell apart


class DataTooSmallError(ValueError):
    """The data cannot satisfy what the config asks of it; the message names the numbers and keys."""


@dataclass
class DataCheck:
    """Unmet requirements, batch sizes fitted to their split (config key -> used value) and the
    one-line notes that say so."""

    problems: list[str] = field(default_factory=list)
    fitted: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def fit_batch(self, key: str, configured: int, split: str, size: int) -> None:
        used = fitted_batch_size(configured, size)
        if used < configured:
            self.fitted[key] = used
            self.notes.append(
                f"{key}={configured} is more than the {split} split's {size} images: it trains on batches of {used} "
                f"(logged as effective.{key})"
            )


def size_keys(data_cfg: Mapping[str, Any], split: str) -> str:
    """The config keys that change how many images ``split`` has."""
    if f"{split}_size" in data_cfg:
        return f"data.{split}_size"
    if f"{split}_fraction" in data_cfg:
        return f"data.{split}_fraction"
    if split == "train" and any(k.endswith("_fraction") for k in data_cfg):
        return "the other splits' data.*_fraction (train gets the rest)"
    return "more data"


def feature_dims(eval_cfg: DictConfig) -> dict[str, int]:
    """FID extractor -> feature dimension, for the extractors whose dimension the config tells."""
    dims = {name: KNOWN_FEATURE_DIMS[name] for name in eval_cfg.features if name in KNOWN_FEATURE_DIMS}
    if "judge" in eval_cfg.features:
        dims["judge"] = int(eval_cfg.judge.embed_dim)
    return dims


def check_training_data(cfg: DictConfig, datamodule: Any) -> DataCheck:
    """The diffusion model's and (``text_encoder=domain_clip``) the text encoder's needs."""
    check = DataCheck()
    n_train = len(datamodule.dataset("train"))
    check.fit_batch("data.batch_size", int(cfg.data.batch_size), "train", n_train)
    if cfg.text_encoder.name == "domain_clip":
        if n_train < MIN_CONTRASTIVE_BATCH:
            check.problems.append(
                f"the domain CLIP text encoder needs at least {MIN_CONTRASTIVE_BATCH} train images, the train split has "
                f"{n_train}: raise {size_keys(cfg.data, 'train')}"
            )
        check.fit_batch("text_encoder.batch_size", int(cfg.text_encoder.batch_size), "train", n_train)
    return check


def check_judge_data(cfg: DictConfig, data_cfg: Mapping[str, Any], datamodule: Any) -> DataCheck:
    """The judge's needs (``eval.judge``, trained on the judge split), when it is enabled: an
    evaluation's, or the frames' of ``trainer.sample_every_n_steps``."""
    check = DataCheck()
    if cfg.eval.judge.enabled:
        n_judge = len(datamodule.dataset("judge"))
        if n_judge < MIN_CONTRASTIVE_BATCH:
            check.problems.append(
                f"the judge needs at least {MIN_CONTRASTIVE_BATCH} images in the judge split, it has {n_judge}: raise "
                f"{size_keys(data_cfg, 'judge')}, or eval.judge.enabled=false (no judge metrics)"
            )
        check.fit_batch("eval.judge.batch_size", int(cfg.eval.judge.batch_size), "judge", n_judge)
    return check


def check_evaluation_data(cfg: DictConfig, data_cfg: Mapping[str, Any], datamodule: Any, n_prompts: int) -> DataCheck:
    """The judge's, the reference set's and the generated set's needs of an evaluation that
    generates ``n_prompts`` x ``eval.samples_per_prompt`` images per setting."""
    check = check_judge_data(cfg, data_cfg, datamodule)
    e = cfg.eval
    split = e.reference_split
    n_reference = len(datamodule.dataset(split))
    n_generated = n_prompts * int(e.samples_per_prompt)
    for extractor, dim in feature_dims(e).items():
        need = dim + 1
        how = ("lower eval.judge.embed_dim (the judge's feature dimension)" if extractor == "judge"
               else f"drop {extractor} from eval.features")
        if n_reference < need:
            check.problems.append(
                f"fid/{extractor} needs at least {need} reference images (feature dimension {dim} + 1); the "
                f"{split} split (eval.reference_split) has {n_reference}: raise {size_keys(data_cfg, split)}, use a "
                f"larger eval.reference_split (with eval.prompt_set=data its captions become the prompts), or {how}"
            )
        if n_generated < need:
            check.problems.append(
                f"fid/{extractor} needs at least {need} generated images per setting; {n_prompts} prompts x "
                f"eval.samples_per_prompt={e.samples_per_prompt} give {n_generated}: raise eval.samples_per_prompt or "
                f"eval.max_prompts, or {how}"
            )
    return check


def enforce(*checks: DataCheck, quiet: bool = False) -> dict[str, int]:
    """Raise :class:`DataTooSmallError` listing every problem; else print the notes (unless
    ``quiet``) and return the fitted batch sizes."""
    problems = [p for c in checks for p in c.problems]
    if problems:
        raise DataTooSmallError(
            "the data is too small for this run (nothing was trained):\n  - " + "\n  - ".join(problems)
            + "\n  (split sizes and the knobs for small data: docs/data.md)"
        )
    if not quiet:
        for note in (n for c in checks for n in c.notes):
            print(f"Note: {note}")
    return {k: v for c in checks for k, v in c.fitted.items()}
