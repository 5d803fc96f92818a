"""The training run behind ``python -m mjexp.train``: validate, build, fit, export, evaluate.

One MLflow parent run per invocation holds the whole story: the resolved config as params, the
domain-CLIP retrieval accuracy, the training curves, the exported weights and, when
``evaluate=true``, the evaluation of ``eval.grid`` in nested runs. A failure marks the run FAILED
with its error, a stop signal KILLED (after a checkpoint at the current step, :mod:`mjexp.runs.signals`);
what was already written (checkpoints, journal) stays on disk. One live run per output folder
(:mod:`mjexp.files.lock`); what a resume continues, and whether it may, is :mod:`mjexp.runs.resume`'s.
"""

from __future__ import annotations

import contextlib
import traceback
from pathlib import Path
from typing import Any, Iterator, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

from mjexp.autoencoder.codec import LatentCodec
from mjexp.config import validate
from mjexp.config.domain import build
from mjexp.data.requirements import check_evaluation_data, check_judge_data, check_training_data, enforce
from mjexp.diffusion.training_module import (
    DiffusionModule,
    DiffusionSettings,
    OptimSettings,
)
from mjexp.files.checkpoints import SafeCheckpointIO
from mjexp.files.lock import run_folder_lock
from mjexp.runs import signals
from mjexp.runs.checkpointing import StepCheckpoint
from mjexp.runs.command import in_multirun
from mjexp.runs.components import (
    build_datamodule,
    build_schedule,
    build_super_resolution,
    build_text_encoder,
    build_unet,
    diffused_shape,
    domain_clip_data,
    train_or_reuse_domain_clip,
)
from mjexp.runs.eval_run.grid_evaluation import evaluate_grid
from mjexp.runs.latent_stages import autoencoder_stages
from mjexp.runs.eval_run.prompts import load_prompts, prompt_params
from mjexp.runs.models import export_model
from mjexp.runs.progress import TrainingProgress, ValidationSteps
from mjexp.runs.resume import (
    CHECKPOINT_DIR,
    EXPORT_DIR,
    Resume,
    continued_folder,
    open_resume,
    refuse_to_overwrite,
    remove_debris,
)
from mjexp.runs.samples_during_training import samples_during_training
from mjexp.runs.stage_clock import StageClock
from mjexp.runs.tracker import REPOSITORY, is_primary_process, open_tracker
from mjexp.text.clip_train import read_metrics
from mjexp.tracking.lightning import SafeMLFlowLogger, ValidationAtItsStep
from mjexp.tracking.mlflow import Tracker
from mjexp.tracking.provenance import write_provenance_files


def build_trainer(
    cfg: DictConfig, output_dir: Path, logger: SafeMLFlowLogger, callbacks: Sequence[L.Callback] = ()
) -> L.Trainer:
    t = cfg.trainer
    checkpoints = StepCheckpoint(output_dir / CHECKPOINT_DIR, t.checkpoint_every_n_steps)
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        max_steps=t.max_steps,
        max_epochs=-1,
        val_check_interval=t.val_check_interval,
        check_val_every_n_epoch=None,
        log_every_n_steps=t.log_every_n_steps,
        gradient_clip_val=t.gradient_clip_val or None,
        accumulate_grad_batches=t.accumulate_grad_batches,
        num_sanity_val_steps=t.num_sanity_val_steps,
        limit_val_batches=t.limit_val_batches,
        enable_progress_bar=False,  # Lightning's bar counts epochs; TrainingProgress counts steps
        enable_model_summary=False,
        logger=logger,
        callbacks=[checkpoints, LearningRateMonitor(logging_interval="step"), ValidationSteps(), ValidationAtItsStep(logger),
                   *([TrainingProgress(t.progress_every_n_steps)] if t.enable_progress_bar else []), *callbacks],
        plugins=[SafeCheckpointIO()],
        default_root_dir=output_dir,
    )


def build_module(cfg: DictConfig, encoder: Any, run_config: dict[str, Any], codec: LatentCodec | None = None) -> DiffusionModule:
    """The diffusion model; with an autoencoder it diffuses ``codec``'s latents (channels and grid)."""
    channels, size = diffused_shape(cfg.data.resolution, codec)
    schedule = build_schedule(cfg.schedule, size)
    super_resolution = build_super_resolution(cfg)
    unet = build_unet(cfg.unet, encoder, cfg.diffusion.parameterization, super_resolution, channels)
    return DiffusionModule(
        unet, encoder, schedule, build(DiffusionSettings, cfg.diffusion),
        optim=build(OptimSettings, cfg.optim, total_steps=cfg.trainer.max_steps),
        run_config=run_config, super_resolution=super_resolution,
    )


def first_and_last(tracker: Tracker, key: str) -> tuple[float, float] | None:
    """First and last logged value of a metric, read back from the journal (works offline)."""
    values = [
        (event.get("step") or 0, event["metrics"][key])
        for event in tracker.journal.events()
        if event["event"] == "metrics" and key in event.get("metrics", {})
    ]
    if not values:
        return None
    values.sort(key=lambda item: item[0])
    return values[0][1], values[-1][1]


def check_data(cfg: DictConfig, datamodule: Any, evaluating: bool) -> dict[str, int]:
    """Every requirement of this run on its data, before anything trains (:mod:`mjexp.data.requirements`);
    returns the batch sizes fitted to small splits."""
    checks = [check_training_data(cfg, datamodule)]
    if evaluating:
        n_prompts = prompt_params(load_prompts(cfg, datamodule), cfg.eval.reference_split)["n"]
        checks.append(check_evaluation_data(cfg, cfg.data, datamodule, n_prompts))
    elif cfg.trainer.sample_every_n_steps:  # the frames' judge
        checks.append(check_judge_data(cfg, cfg.data, datamodule))
    return enforce(*checks)


@contextlib.contextmanager
def claimed_run_folder(cfg: DictConfig, requested: dict[str, Any]) -> Iterator[tuple[Path, Resume | None]]:
    """This run's folder, locked for as long as the run lasts, and the checkpoint it continues."""
    output_dir = Path(cfg.output_dir)
    continued = continued_folder(cfg.ckpt_path, output_dir, in_multirun(), signals.requeued_slurm_job())
    run_dir = continued or output_dir
    # The other processes of a distributed run share the primary's folder.
    with run_folder_lock(run_dir) if is_primary_process() else contextlib.nullcontext():
        if is_primary_process():
            remove_debris(run_dir)
        if continued is None:
            refuse_to_overwrite(run_dir)
            yield run_dir, None
        else:
            yield run_dir, open_resume(cfg.ckpt_path, run_dir, requested)


def run_training(cfg: DictConfig) -> dict[str, float]:
    """Train (or resume), export, optionally evaluate; returns the final metrics."""
    validate(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    with claimed_run_folder(cfg, resolved) as (output_dir, resume):
        return train_in_folder(cfg, output_dir, resume, resolved)


def train_in_folder(
    cfg: DictConfig, output_dir: Path, resume: Resume | None, resolved: dict[str, Any]
) -> dict[str, float]:
    """:func:`run_training` once its folder is claimed."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # a trainable text encoder's init
    clock = StageClock()
    tracker = open_tracker(cfg, output_dir, resume)
    try:
        if resume is None:
            tracker.log_params({k: v for k, v in resolved.items() if k != "output_dir"})
            config_file = output_dir / "config.yaml"
            config_file.write_text(OmegaConf.to_yaml(cfg, resolve=True))
            tracker.log_artifact(config_file)
            for path in write_provenance_files(REPOSITORY, output_dir / "provenance"):
                tracker.log_artifact(path, "provenance")
        else:
            print(f"Resuming from {resume.checkpoint} (output folder {output_dir})")
        datamodule = build_datamodule(cfg.data)
        evaluating = bool(cfg.evaluate and cfg.eval.grid)
        fitted = check_data(cfg, datamodule, evaluating)
        if fitted:
            tracker.log_params({"effective": fitted})
        clip_path = None
        if cfg.text_encoder.name == "domain_clip":
            rate = cfg.text_encoder.get("caption_noise")
            captions = "" if rate is None else f", its captions at caption noise {rate}"
            print(f"Text encoder: domain CLIP (trained on the train split{captions}, or reused from the cache)...")
            clip_data = domain_clip_data(cfg.data, cfg.text_encoder, datamodule)
            with clock.stage("domain CLIP"):
                clip_path = train_or_reuse_domain_clip(cfg.text_encoder, clip_data)
            clip_metrics = read_metrics(clip_path)
            tracker.log_metrics({"text_encoder/val_retrieval_top1": clip_metrics["val_retrieval_top1"]})
            print(f"  {clip_path.name}: val image->text retrieval top-1 {clip_metrics['val_retrieval_top1']:.3f}")
            resolved["text_encoder"]["path"] = str(clip_path.resolve())  # a .ckpt works from any folder
        codec, fit_data = autoencoder_stages(cfg, datamodule, tracker, clock, resolved)
        encoder = build_text_encoder(cfg.text_encoder, domain_clip_path=clip_path)
        # trainer.sample_every_n_steps: its judge is trained (or reused) before the model trains.
        with clock.stage("judge and reference") if cfg.trainer.sample_every_n_steps else contextlib.nullcontext():
            samples = samples_during_training(cfg, datamodule, tracker, output_dir, clip_path, codec)
        # Seeded again: training a domain CLIP (or the judge) moves random states that reusing its
        # cached copy does not, and the model must not depend on the cache.
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        module = build_module(cfg, encoder, resolved, codec)
        if cfg.trainer.compile:
            module.unet.compile()  # in place: parameter names (checkpoints, EMA, export) are unchanged
        trainer = build_trainer(cfg, output_dir, SafeMLFlowLogger(tracker), [samples] if samples else [])
        with clock.stage("diffusion training"):
            if resume is None:
                # A step-0 validation gives the untrained baseline that the final val/loss is judged against.
                trainer.validate(module, datamodule=fit_data, verbose=False)
            with signals.deferred():  # a stop signal: a checkpoint at the current step (StepCheckpoint)
                trainer.fit(module, datamodule=fit_data, ckpt_path=str(resume.checkpoint) if resume else None)
            validated = next(c for c in trainer.callbacks if isinstance(c, ValidationSteps)).steps
            if trainer.global_step not in validated:  # val/loss at the end, not only at the last multiple of the interval
                trainer.validate(module, datamodule=fit_data, verbose=False)
        if not trainer.is_global_zero:
            return {}

        export_dir = export_model(module, resolved, output_dir / EXPORT_DIR, clip_path, codec)
        tracker.log_artifact(export_dir, "export")
        results = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.as_tensor(v).numel() == 1}
        if cfg.evaluate and not cfg.eval.grid:
            print("No eval.grid given: skipping evaluation (e.g. eval.grid.guidance.scale=[1,3]).")
        if cfg.evaluate and cfg.eval.grid:
            # Its own eval/ folder: images of its earlier weights (a continued training) are made again.
            results.update(evaluate_grid(cfg, export_dir, tracker, output_dir / "eval", ends_training=True, clock=clock))
        tracker.log_metrics(clock.metrics())
        tracker.finish("FINISHED")
    except BaseException as error:
        message = "".join(traceback.format_exception_only(type(error), error)).strip()
        tracker.finish(signals.final_status(error), error=message)
        raise
    print_summary(tracker, output_dir, export_dir, clock)
    return results


def print_summary(tracker: Tracker, output_dir: Path, export_dir: Path, clock: StageClock) -> None:
    val = first_and_last(tracker, "val/loss")
    lines = [
        "",
        "Done.",
        f"  MLflow:  {tracker.ui_hint}",
        f"  Weights: {export_dir} ({', '.join(sorted(p.name + ('/' if p.is_dir() else '') for p in export_dir.iterdir()))})",
        f"  Outputs: {output_dir}",
        f"  Stages:  {clock.line()}",
    ]
    if val:
        lines.insert(2, f"  val/loss: first {val[0]:.4f} -> last {val[1]:.4f} ({100 * val[1] / val[0]:.0f}%)")
    report = output_dir / "eval" / "report.html"
    if report.exists():
        lines.append(f"  Grids:   {output_dir / 'eval' / 'generated'}/<setting>/grid.png")
        lines.append(f"  Report:  {report} (report.json, pareto.png)")
    print("\n".join(lines))

