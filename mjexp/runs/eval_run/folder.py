"""Scoring a folder of images made elsewhere on the same footing (same judge, reference, metrics)."""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from evaluation import make_record, write_report
from evaluation.grids import SampleGrid
from mjexp.data.imagefolder import check_inside_root
from mjexp.data.requirements import check_evaluation_data, enforce
from mjexp.runs.components import build_datamodule
from mjexp.runs.eval_run.prompts import folder_template
from mjexp.runs.eval_run.scoring import ScoringContext
from mjexp.runs.eval_run.table import print_table
from mjexp.tracking.mlflow import Tracker


def read_image_folder(folder: Path) -> tuple[torch.Tensor, list[str], list[dict] | None]:
    """A folder of generated images with ``metadata.jsonl`` rows ``{"file_name", "text"[, "attrs"]}``
    (files inside the folder: a report shows them, so a row must not reach other files of this machine)."""
    metadata = folder / "metadata.jsonl"
    if not metadata.is_file():
        raise FileNotFoundError(f"images={folder}: needs metadata.jsonl with one {{'file_name', 'text'}} row per image")
    rows = [json.loads(line) for line in metadata.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{metadata} lists no images")
    arrays = []
    for number, row in enumerate(rows, 1):
        check_inside_root(folder, row["file_name"], f"{metadata} row {number}", option=None)
        path = folder / row["file_name"]
        if not path.is_file():
            raise FileNotFoundError(f"{metadata} row {number}: {path} does not exist")
        try:
            with Image.open(path) as image:
                arrays.append(np.asarray(image.convert("RGB")))
        except (OSError, ValueError) as error:  # corrupt, truncated, a text chunk inflating too far
            raise ValueError(f"{metadata} row {number}: cannot read {path} ({error})") from None
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"images in {folder} have different sizes {sorted(shapes)}; resize them to one size first")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    attrs = [row["attrs"] for row in rows] if all("attrs" in row for row in rows) else None
    return images, [row["text"] for row in rows], attrs


def score_folder(cfg: DictConfig, folder: str | Path, tracker: Tracker, out_dir: Path) -> dict[str, float]:
    """Score images generated elsewhere on the same footing (same judge, reference and metrics)."""
    folder = Path(folder)
    images, prompts, attrs = read_image_folder(folder)
    schema = getattr(build_datamodule(cfg.data), "schema", None)
    template = folder_template(cfg.eval.prompt_set, schema) if attrs else None
    if attrs and template is None:
        warnings.warn(f"{folder}: its rows' attrs are not scored: the data has no caption schema to read them "
                      "with; name a prompt set whose template does (eval.prompt_set=...)", stacklevel=2)
    scored = OmegaConf.merge(cfg, {"eval": {"samples_per_prompt": 1}})  # the folder's images, one per row
    fitted = enforce(check_evaluation_data(scored, cfg.data, build_datamodule(cfg.data), len(prompts)))
    if fitted:
        tracker.log_params({"effective": fitted})
    context = ScoringContext(cfg, OmegaConf.to_container(cfg.data, resolve=True), template)
    start = time.perf_counter()
    result = context.score(images, prompts, attrs if template else None)
    setting = {"sampler": "external", "steps": 0, "guidance": float("nan"), "hires": "n/a", "schedule": "n/a", "nfe": 0}
    record = make_record(setting, {"score_seconds": time.perf_counter() - start}, result)
    record["label"] = folder.name
    tracker.log_params({"scored_images": {"folder": str(folder), "n": len(prompts)}, "metric_definitions": result.params})
    validity = result.validity.as_metrics() if result.validity is not None else {}
    tracker.log_metrics({k: v for k, v in (result.metrics | validity).items() if math.isfinite(v)})
    shown = images[: cfg.eval.grid_prompts]
    grid = SampleGrid(shown, prompts[: len(shown)], columns=1, title=str(folder))
    paths = write_report([record], out_dir, {folder.name: grid}, title=f"mjexp evaluation: {folder}")
    for path in paths.values():
        tracker.log_artifact(path, "report")
    print_table([record])
    return dict(result.metrics)
