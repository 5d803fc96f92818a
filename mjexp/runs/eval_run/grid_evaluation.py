"""Evaluate a trained model over a grid of sampling settings (``eval.grid``) in one invocation.

Shared by ``python -m mjexp.eval`` and the end of ``python -m mjexp.train``. Order of work:

1. Preflight: rebuild the model, load the prompt set, train or reuse the judge (a domain CLIP
   trained on the data's ``judge`` split with its own seed), resolve every feature extractor and
   weight file, and compute (or load cached) reference statistics with the judge's validity.
   Nothing is generated before all of this has succeeded.
2. For each setting of the grid: generate the prompt set to disk (resumable), score the PNGs as
   written, log a nested MLflow run with its metrics and a sample grid.
3. Write ``report.json`` / ``report.html`` / ``pareto.png`` and log them to the parent run.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from omegaconf import DictConfig, OmegaConf

from evaluation import make_record, write_report
from evaluation.grids import SampleGrid, grid_png
from evaluation.metrics import PairingSettings, add_paired_comparisons
from evaluation.metrics.attribute_accuracy import AttributeAccuracyMetric
from evaluation.prompt_sets import PromptSet
from mjexp.config.domain import sampling_settings
from mjexp.config.grid import eval_settings
from mjexp.data.requirements import check_evaluation_data, enforce
from mjexp.diffusion.superres import SuperResolution
from mjexp.runs.components import build_datamodule, describe_sampling
from mjexp.runs.eval_run.paired_settings import disagreement_grids, log_paired_metrics
from mjexp.runs.eval_run.prompts import describe_prompts, load_prompts, prompt_params
from mjexp.runs.eval_run.scoring import ScoringContext
from mjexp.runs.eval_run.table import print_table
from mjexp.runs.generation import generate_to_folder, load_images, read_manifest
from mjexp.runs.stage_clock import StageClock
from mjexp.runs.models import LoadedModel, images_fingerprint, load_model, load_sr_model
from mjexp.sampling.hires import SR, check_sr_model
from mjexp.sampling.runtime import Runtime
from mjexp.tracking.mlflow import Tracker


def setting_label(overrides: Mapping[str, Any]) -> str:
    """Folder- and run-name-safe label, e.g. ``guidance.scale=3,sampler.name=ddim``."""
    text = ",".join(f"{k}={v}" for k, v in overrides.items())
    return text.replace("/", "_").replace(" ", "")


def apply_overrides(cfg: DictConfig, overrides: Mapping[str, Any]) -> DictConfig:
    """A copy of the sampling part of ``cfg`` with one grid setting applied (validated)."""
    node = OmegaConf.create({"sampler": cfg.sampler, "guidance": cfg.guidance, "hires": cfg.hires})
    for key, value in overrides.items():
        OmegaConf.update(node, key, value, force_add=False)
    return node


def record_setting(
    loaded: LoadedModel, sampling: DictConfig, nfe: int, network_evals: int, sr: SuperResolution | None = None
) -> dict[str, Any]:
    schedule = loaded.config["schedule"]
    hires = "off"
    if sampling.hires.enabled:
        h = sampling.hires
        hires = f"x{h.scale} {h.upscaler} strength={h.strength} steps={h.steps}"
        if loaded.codec is not None:
            hires += f" space={h.space}"
        if h.upscaler == SR:
            hires += f" noise_aug={sr.noise_aug if h.noise_aug is None else h.noise_aug}"
    return {
        "sampler": sampling.sampler.name,
        "steps": int(sampling.sampler.steps),
        "guidance": float(sampling.guidance.scale),
        "guidance_variant": guidance_variant(sampling.guidance),
        "hires": hires,
        "schedule": schedule["kind"] + ("+zt-snr" if schedule.get("zero_terminal_snr") else ""),
        "parameterization": loaded.parameterization,
        "nfe": nfe,
        "network_evals": network_evals,
    }


def guidance_variant(g: DictConfig) -> str:
    parts = [g.schedule]
    if g.rescale:
        parts.append(f"rescale={g.rescale}")
    if g.interval is not None:
        parts.append(f"interval={list(g.interval)}")
    if g.dynamic_threshold is not None:
        parts.append(f"threshold={g.dynamic_threshold}")
    return " ".join(parts)


class SettingOutcome(NamedTuple):
    """One setting's report record, its image grids per stage, what each metric's paired test needs
    of its final images, and their files (in manifest order, for paired tests)."""

    record: dict[str, Any]
    grids: dict[str, SampleGrid]
    states: dict[str, object]  # by metric name (evaluation.metrics)
    files: list[Path]  # the final images, manifest order
    run: Tracker  # the setting's (finished) MLflow run, which its paired differences go to


class GridEvaluation:
    """One evaluation invocation: preflight in ``__init__``, then :meth:`run`.

    ``ends_training``: this evaluation ends a training run (``mjexp.train``), which already checked
    (and said) what the evaluation needs of the data; a generation folder of its own holding images
    of another model, seed or settings (its earlier weights, after it trained on) is emptied and
    generated again instead of refused.
    """

    def __init__(
        self, cfg: DictConfig, ckpt: str | Path, tracker: Tracker, out_dir: Path, ends_training: bool = False
    ) -> None:
        self.cfg, self.tracker, self.out_dir = cfg, tracker, Path(out_dir)
        self.ends_training = ends_training
        self.settings = eval_settings(cfg.eval)
        # Every setting must be valid before anything runs.
        hires = [sampling_settings(apply_overrides(cfg, overrides))[2] for overrides in self.settings]
        # Downloads as the user allows them: eval.allow_download, or a training's own text_encoder setting.
        allow_download = cfg.eval.allow_download or OmegaConf.select(cfg, "text_encoder.allow_download", default=False)
        # The super-resolution model (hires.model) is loaded once, for the settings with upscaler=sr.
        self.sr_model = None
        if cfg.hires.model and any(h.uses_sr for h in hires):
            self.sr_model = load_sr_model(cfg.hires.model, cfg.eval.weights, allow_download)
        for h in hires:
            check_sr_model(h, self.sr_model.super_resolution if self.sr_model else None)
        self.loaded = load_model(ckpt, weights=cfg.eval.weights, allow_download=allow_download)
        data_cfg = self.loaded.config["data"]
        datamodule = build_datamodule(OmegaConf.create(data_cfg))
        self.prompts = load_prompts(cfg, datamodule)
        n_prompts = prompt_params(self.prompts, cfg.eval.reference_split)["n"]
        fitted = enforce(check_evaluation_data(cfg, data_cfg, datamodule, n_prompts), quiet=ends_training)
        if fitted and not ends_training:
            tracker.log_params({"effective": fitted})
        print(describe_prompts(prompt_params(self.prompts, cfg.eval.reference_split), cfg.eval.prompt_set,
                               cfg.eval.samples_per_prompt))
        template = self.prompts.template if isinstance(self.prompts, PromptSet) else None
        self.context = ScoringContext(cfg, data_cfg, template, self.loaded.config["text_encoder"].get("path"))
        self.resolution = self.context.resolution

    @property
    def prompt_list(self) -> list[str]:
        return list(self.prompts.prompts) if isinstance(self.prompts, PromptSet) else list(self.prompts[0])

    @property
    def prompt_attrs(self) -> list[dict] | None:
        return list(self.prompts.attrs) if isinstance(self.prompts, PromptSet) else self.prompts[1]

    def run(self) -> list[dict[str, Any]]:
        """Generate and score every setting; write and log the report. Returns the records."""
        cfg, n = self.cfg, self.cfg.eval.samples_per_prompt
        records, grids, states, files, runs = [], {}, [], [], []
        self.tracker.log_params({"prompts": {**prompt_params(self.prompts, cfg.eval.reference_split), "samples_per_prompt": n},
                                 "grid": {"n_settings": len(self.settings)}})
        for number, overrides in enumerate(self.settings, 1):
            label = setting_label(overrides)
            sampling = apply_overrides(cfg, overrides)
            print(f"[{number}/{len(self.settings)}] {label}: {describe_sampling(sampling)}")
            outcome = self.evaluate_setting(sampling, label, overrides)
            records.append(outcome.record)
            states.append(outcome.states)
            files.append(outcome.files)
            runs.append(outcome.run)
            grids.update(outcome.grids)
        add_paired_comparisons(records, states, PairingSettings(cfg.eval.bootstrap, cfg.eval.seed, cfg.eval.device))
        log_paired_metrics(records, runs)
        grids.update(disagreement_grids(records, [s.get(AttributeAccuracyMetric.name) for s in states], files))
        paths = write_report(records, self.out_dir, grids, title=f"mjexp evaluation: {cfg.name}")
        for path in paths.values():
            self.tracker.log_artifact(path, "report")
        print_table(records)
        return records

    def evaluate_setting(
        self, sampling: DictConfig, label: str, overrides: Mapping[str, Any]
    ) -> SettingOutcome:
        cfg, n = self.cfg, self.cfg.eval.samples_per_prompt
        runtime = Runtime(cfg.eval.precision, cfg.eval.compile, cfg.eval.cuda_graphs)
        module = self.loaded.guidance_sampler(sampling, cfg.eval.seed, runtime, self.sr_model)
        folder = self.out_dir / "generated" / label
        settings = OmegaConf.to_container(sampling, resolve=True)
        before = read_manifest(folder)
        start = time.perf_counter()
        manifest = generate_to_folder(
            module, self.prompt_list, n, folder, settings, cfg.eval.batch_size,
            trainer_kwargs={"enable_progress_bar": cfg.eval.progress_bar, "accelerator": cfg.eval.device},
            model=images_fingerprint(self.loaded, self.sr_model if module.hires.uses_sr else None),
            replace_other_source=self.ends_training,
        )
        generation_seconds = time.perf_counter() - start
        made = sum(before.get(key) != row for key, row in manifest.items())
        rows = [manifest[key] for key in sorted(manifest)]
        prompts = [row["prompt"] for row in rows]
        attrs = [self.prompt_attrs[row["prompt_index"]] for row in rows] if self.prompt_attrs else None
        seeds = [cfg.eval.seed] * len(rows)
        stages = {"": "file"} | ({"base/": "base_file"} if sampling.hires.enabled else {})
        metrics: dict[str, float] = {}
        result = None
        grids = {}
        shown = min(cfg.eval.grid_prompts, len(self.prompt_list))
        how = describe_sampling(sampling)
        for prefix, key in stages.items():
            images = load_images(folder, rows, key)
            scored = self.context.score(images, prompts, attrs, seeds)
            metrics.update({prefix + k: v for k, v in scored.metrics.items()})
            if prefix == "":
                result = scored
            stage = f"{label} {prefix or 'final'}".strip()
            grids[stage] = SampleGrid(images[: shown * n], self.prompt_list[:shown], n, f"{stage}: {how}")
        nfe, network_evals = rows[0]["nfe"], rows[0]["network_evals"]
        costs = {
            "generation_seconds": generation_seconds,
            # Over the images made now: a resumed folder's earlier images took unrecorded time.
            "images_per_second": made / generation_seconds if made else float("nan"),
            "nfe": nfe,
            "network_evals": network_evals,
        }
        if "decode_seconds" in rows[0]:  # a latent model: the decoder's share of generation_seconds
            costs["decode_seconds"] = sum(row["decode_seconds"] for row in rows)
        result.metrics.update(metrics)
        sr = self.sr_model.super_resolution if self.sr_model else None
        record = make_record(record_setting(self.loaded, sampling, nfe, network_evals, sr), costs, result)
        record["label"] = label
        record["overrides"] = dict(overrides)
        child = self.tracker.child(label, tags={"mjexp.setting": label})
        child.log_params({"setting": dict(overrides), "sampling": settings, "metric_definitions": result.params})
        validity = result.validity.as_metrics() if result.validity is not None else {}
        logged = metrics | {f"cost/{k}": float(v) for k, v in costs.items()} | validity
        child.log_metrics({k: v for k, v in logged.items() if math.isfinite(v)})
        grid_file = folder / "grid.png"
        grid_file.write_bytes(grid_png(grids[f"{label} final"]))
        child.log_artifact(grid_file)
        child.finish()
        files = [folder / row["file"] for row in rows]
        return SettingOutcome(record, grids, result.states, files, child)


def evaluate_grid(
    cfg: DictConfig, ckpt: str | Path, tracker: Tracker, out_dir: Path, ends_training: bool = False,
    clock: StageClock | None = None,
) -> dict[str, float]:
    """Run the grid evaluation and return headline metrics (``eval/<label>/<metric>``); ``clock``
    times its preflight (model, judge, reference statistics) and its generation and scoring."""
    clock = clock or StageClock()
    with clock.stage("judge and reference"):
        evaluation = GridEvaluation(cfg, ckpt, tracker, out_dir, ends_training)
    with clock.stage("generation and scoring"):
        records = evaluation.run()
    return {f"eval/{r['label']}/{k}": float(v) for r in records for k, v in r["metrics"].items()}
