"""The MLflow parent run of an invocation (``mjexp.train`` or ``mjexp.eval``), and which process owns it."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

from mjexp.runs.resume import Resume
from mjexp.runs.run_info import write_run_info
from mjexp.tracking.hydra_job import hydra_job_tags
from mjexp.tracking.journal import JOURNAL_NAME, Journal
from mjexp.tracking.mlflow import Tracker, resolve_tracking_uri
from mjexp.tracking.provenance import provenance_tags

REPOSITORY = Path(__file__).resolve().parents[2]  # provenance: the code's git commit and diff


def is_primary_process() -> bool:
    """False in the extra processes a distributed launcher starts (Lightning DDP, torchrun, SLURM).

    Those processes re-run the entry point; only the primary one tracks, exports and evaluates.
    """
    return all(int(os.environ.get(var, "0") or 0) == 0 for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"))


def open_tracker(cfg: DictConfig, output_dir: Path, resume: Resume | None) -> Tracker:
    """The invocation's parent MLflow run (the resumed one when continuing a training)."""
    launch_dir = Path.cwd()
    if not is_primary_process():
        return Tracker("", cfg.tracking.experiment or cfg.name, "", Journal(None), enabled=False)
    uri = resolve_tracking_uri(cfg.tracking.tracking_uri, launch_dir)
    experiment = cfg.tracking.experiment or cfg.name
    run_name = cfg.tracking.run_name or output_dir.name
    tags = {
        **provenance_tags(REPOSITORY),
        **hydra_job_tags(),
        "mjexp.output_dir": str(output_dir),
    }
    tracker = Tracker(
        uri, experiment, run_name, Journal(output_dir / JOURNAL_NAME), tags=tags,
        resume_run_id=resume.run_id if resume else None, enabled=cfg.tracking.enabled,
    )
    write_run_info(output_dir, tracker.run_id, uri, experiment)
    return tracker
