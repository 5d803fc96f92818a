"""Each setting of an evaluation grid against the first, image by image.

Every setting starts from the same per-item noise on the same prompts, so two settings' images of
one item differ only by the setting: paired tests (attribute accuracy, diversity, FID, patch FID)
are far more sensitive than comparing the settings' own intervals. Each metric's paired test is
its own (:mod:`evaluation.metrics`); here they go to the settings' MLflow runs
(``paired/<metric>``, read by ``sweeps.compare``), and the images whose verdict changed into grids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from evaluation.grids import GRID_COLUMNS, SampleGrid
from evaluation.metrics import paired_metrics
from evaluation.metrics.attribute_accuracy import verdict_changes
from mjexp.runs.generation import load_images
from mjexp.tracking.mlflow import Tracker


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
