"""Each setting of an evaluation grid against the first, image by image.

Every setting starts from the same per-item noise on the same prompts, so two settings' images of
one item differ only by the setting: paired tests (attribute accuracy, diversity, FID, patch FID)
are far more sensitive than comparing the settings' own intervals. The results go into the
settings' report records (``paired_*_vs_first``), to their MLflow runs (``paired/<metric>``, read
by ``sweeps.compare``) and into grids of the images whose verdict changed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from evaluation import paired_difference
from evaluation.bootstrap import fid_difference
from evaluation.diversity import Diversity, paired_diversity_difference
from evaluation.grids import GRID_COLUMNS, SampleGrid
from evaluation.judge import JUDGE
from evaluation.patch_fid import PatchMoments, patch_fid_difference
from mjexp.runs.generation import load_images
from mjexp.tracking.mlflow import Tracker


def mean_attribute_flags(per_item: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Per image: the fraction of its attributes the judge found as prompted."""
    arrays = [np.asarray(v, dtype=np.float64) for k, v in per_item.items() if k.startswith("attr_acc/")]
    return np.mean(arrays, axis=0) if arrays else None


def add_paired_comparisons(records: list[dict[str, Any]], flags: list[np.ndarray | None]) -> None:
    """Each setting vs the first (same prompts and seeds): paired difference of attribute accuracy,
    and how many images became fully as prompted (``fixed``) or stopped being so (``broken``)."""
    if len(records) < 2 or flags[0] is None:
        return
    for record, own in zip(records[1:], flags[1:]):
        diff, se = paired_difference(own, flags[0])
        fixed, broken = verdict_changes(flags[0], own)
        record["paired_vs_first"] = {
            "baseline": records[0]["label"],
            "metric": "mean attribute accuracy per image",
            "difference": diff,
            "standard_error": se,
            "z": diff / se if se > 0 else (math.inf if diff > 0 else 0.0),
            "fixed": int(fixed.size),
            "broken": int(broken.size),
        }


def add_paired_diversity(records: list[dict[str, Any]], diversities: list[Mapping[str, Diversity]]) -> None:
    """Each setting vs the first: paired difference of each per-prompt diversity over the prompts
    both measured (for ``.../faithful``, those with 2+ faithful images in both settings)."""
    for record, own in zip(records[1:], diversities[1:]):
        paired = {}
        for metric, baseline in diversities[0].items():
            shared = set(baseline.groups) & set(own[metric].groups) if metric in own else set()
            if len(shared) < 2:
                continue
            diff, se, n_prompts = paired_diversity_difference(own[metric], baseline)
            paired[metric] = {"difference": diff, "standard_error": se, "n_prompts": n_prompts,
                              "z": diff / se if se > 0 else (math.inf if diff > 0 else 0.0)}
        if paired:
            record["paired_diversity_vs_first"] = {"baseline": records[0]["label"], "metrics": paired}


def add_paired_fid(
    records: list[dict[str, Any]],
    features: list[Mapping[str, torch.Tensor]],
    reference: Mapping[str, tuple[torch.Tensor, int | None]],
    bootstrap: int,
    seed: int,
    device: str,
) -> None:
    """Each setting vs the first, per FID extractor: FID(setting) - FID(first) with the paired
    bootstrap (:func:`evaluation.bootstrap.fid_difference`); ``reference`` maps an extractor to its
    reference features and rank bound. Hires settings pair with plain ones: features do not
    depend on the image size."""
    for record, own in zip(records[1:], features[1:]):
        paired = {}
        for name, (reference_features, rank) in reference.items():
            if name not in own or name not in features[0] or own[name].shape != features[0][name].shape:
                continue
            result = fid_difference(own[name], features[0][name], reference_features, bootstrap, seed,
                                    device=device, feature_rank=rank)
            z = result.difference / result.standard_error if result.standard_error > 0 else 0.0
            paired[f"fid/{name}"] = {**result.as_params(), "z": z}
        if paired:
            record["paired_fid_vs_first"] = {"baseline": records[0]["label"], "metrics": paired}


def paired_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """A record's paired differences vs the first setting as metrics: ``paired/<metric>`` (the
    difference) and ``paired/<metric>/se`` (its paired standard error)."""
    pairs: dict[str, Mapping[str, Any]] = {}
    if "paired_vs_first" in record:
        pairs[f"attr_acc/{JUDGE}/mean"] = record["paired_vs_first"]
    for key in ("paired_fid_vs_first", "paired_diversity_vs_first"):
        pairs.update(record.get(key, {}).get("metrics", {}))
    if "paired_patch_fid_vs_first" in record:
        pairs["patch_fid"] = record["paired_patch_fid_vs_first"]
    values = {}
    for name, paired in pairs.items():
        values[f"paired/{name}"] = float(paired["difference"])
        values[f"paired/{name}/se"] = float(paired["standard_error"])
    return {k: v for k, v in values.items() if math.isfinite(v)}


def log_paired_metrics(records: list[dict[str, Any]], runs: list[Tracker]) -> None:
    """Each setting's paired differences to its MLflow run, with what they were paired with
    (``paired.baseline``: the first setting's run name, under the same parent run) so that
    ``sweeps.compare`` knows what they were paired with (names survive ``mjexp.tracking.sync`` to
    another store, run ids do not)."""
    for record, run in zip(records[1:], runs[1:]):
        metrics = paired_metrics(record)
        if metrics:
            run.log_params({"paired": {"baseline": runs[0].run_name}})
            run.log_metrics(metrics)


def add_paired_patch_fid(
    records: list[dict[str, Any]],
    patches: list[PatchMoments | None],
    reference_at: Callable[[int], PatchMoments],
    bootstrap: int,
    seed: int,
) -> None:
    """Each setting vs the first, when both have patch statistics at one size (a hires setting
    against a plain one has not): patch FID(setting) - patch FID(first), paired over the items."""
    baseline = patches[0] if patches else None
    for record, own in zip(records[1:], patches[1:]):
        if baseline is None or own is None or own.size != baseline.size or own.n_images != baseline.n_images:
            continue
        paired = patch_fid_difference(own, baseline, reference_at(own.size[0]), bootstrap, seed)
        z = paired.difference / paired.standard_error if paired.standard_error > 0 else 0.0
        record["paired_patch_fid_vs_first"] = {"baseline": records[0]["label"], **paired.as_params(), "z": z}


def verdict_changes(baseline: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of images (same prompt and noise) with every attribute right in ``other`` but not in
    ``baseline`` (fixed), and the reverse (broken): a paired gain is only real if fixed > broken."""
    base_ok, other_ok = np.asarray(baseline) == 1.0, np.asarray(other) == 1.0
    return np.flatnonzero(~base_ok & other_ok), np.flatnonzero(base_ok & ~other_ok)


def disagreement_grids(
    records: list[dict[str, Any]], flags: list[np.ndarray | None], files: list[list[Path]], limit: int = GRID_COLUMNS
) -> dict[str, SampleGrid]:
    """For each setting vs the first: up to ``limit`` fixed and broken images, the first setting's
    image above this setting's from the same noise, so a paired difference can be looked at. Rows
    of different sizes (hires scales) are shown at the larger size (nearest)."""
    grids: dict[str, SampleGrid] = {}
    if len(records) < 2 or flags[0] is None:
        return grids
    base = records[0]["label"]
    for record, own, own_files in zip(records[1:], flags[1:], files[1:]):
        for kind, indices in zip(("fixed", "broken"), verdict_changes(flags[0], own)):
            chosen = indices[:limit].tolist()
            if not chosen:
                continue
            top, bottom = (load_images(Path(), [{"file": str(paths[i])} for i in chosen]) for paths in (files[0], own_files))
            size = (max(top.shape[-2], bottom.shape[-2]), max(top.shape[-1], bottom.shape[-1]))
            top, bottom = (F.interpolate(row, size=size, mode="nearest-exact") for row in (top, bottom))
            blank = torch.full((limit - len(chosen), *top.shape[1:]), 255, dtype=torch.uint8)  # keeps the rows aligned
            title = (f"{record['label']} vs {base}: {kind} ({indices.size} images; top row {base}, "
                     f"bottom row {record['label']}, same prompt and noise)")
            grids[title] = SampleGrid(torch.cat([top, blank, bottom, blank]), (base, record["label"]), limit)
    return grids
