"""``python -m mjexp.eval``: one parent MLflow run per invocation, a checkpoint's grid or a folder."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from mjexp.config import validate
from mjexp.files.lock import run_folder_lock
from mjexp.runs.eval_run.folder import score_folder
from mjexp.runs.eval_run.grid_evaluation import evaluate_grid
from mjexp.runs.models import mlflow_run_of
from mjexp.runs.run_info import read_run_id
from mjexp.runs.signals import final_status
from mjexp.runs.stage_clock import StageClock
from mjexp.runs.tracker import open_tracker


def run_evaluation(cfg: DictConfig) -> dict[str, float]:
    """``python -m mjexp.eval``: one parent MLflow run (tagged with the evaluated training run)."""
    validate(cfg)
    if (cfg.ckpt is None) == (cfg.images is None):
        raise ValueError("give exactly one of ckpt=PATH (export folder, .ckpt or mlflow:<run_id>) or images=DIR")
    out_dir = Path(cfg.output_dir)
    clock = StageClock()
    with run_folder_lock(out_dir):
        tracker = open_tracker(cfg, out_dir, None)
        try:
            tracker.set_tags({"mjexp.evaluates": evaluated_run(cfg.ckpt) if cfg.ckpt else str(cfg.images)})
            if cfg.ckpt:
                metrics = evaluate_grid(cfg, cfg.ckpt, tracker, out_dir, clock=clock)
                tracker.log_metrics(clock.metrics())
            else:
                metrics = score_folder(cfg, cfg.images, tracker, out_dir)
            tracker.finish("FINISHED")
        except BaseException as error:
            tracker.finish(final_status(error), error=repr(error))
            raise
    print(f"Report: {out_dir / 'report.html'}\nMLflow: {tracker.ui_hint}")
    if clock.seconds:
        print(f"Stages: {clock.line()}")
    return metrics


def evaluated_run(ckpt: str) -> str:
    """The MLflow run that produced a checkpoint, when it can be told; else the reference itself."""
    run_id = mlflow_run_of(ckpt)
    if run_id is not None:
        return run_id
    path = Path(ckpt)
    for folder in (path, path.parent, path.parent.parent):  # a run folder, its export/ or checkpoints/<file>
        run_id = read_run_id(folder)
        if run_id:
            return run_id
    return str(path)
