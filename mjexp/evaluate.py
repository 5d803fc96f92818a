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

import json
import math
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from evaluation import EvalConfig, ReferenceSet, Scorer, load_prompt_set, make_record, write_report
from evaluation.attributes import holdout_accuracy
from evaluation.diversity import Diversity
from evaluation.patch_fid import PatchMoments
from evaluation.prompt_sets import CaptionTemplate, PromptSet
from evaluation.grids import SampleGrid, grid_png
from mjexp.builders import build_datamodule, describe_sampling, sampling_settings, train_or_reuse_domain_clip
from mjexp.data_requirements import check_evaluation_data, enforce
from mjexp.diffusion.superres import SuperResolution
from mjexp.export import LoadedModel, images_fingerprint, load_model, load_sr_model
from mjexp.generation import generate_to_folder, load_images, read_manifest
from mjexp.grid import AUTO_PROMPTS, DATA_PROMPTS, GENERAL_PROMPT_SETS, expand_grid
from mjexp.paired_settings import (
    add_paired_comparisons, add_paired_diversity, add_paired_fid, add_paired_patch_fid, disagreement_grids,
    log_paired_metrics, mean_attribute_flags,
)
from mjexp.sampling.hires import SR, check_sr_model
from mjexp.sampling.module import GuidanceSampler
from mjexp.sampling.runtime import Runtime
from mjexp.text.clip_train import read_metrics
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


def warn_if_captions_differ(prompt_set: PromptSet, schema: Any) -> None:
    """A prompt set written in another caption form than the model's training captions (e.g. the
    single-object set for a two-object model) still runs, but measures out-of-distribution prompts."""
    if schema is None or prompt_set.template.template == schema.template:
        return
    warnings.warn(
        f"prompt set {prompt_set.name} has captions like {prompt_set.template.template!r}, but the model was "
        f"trained on captions like {schema.template!r}: its scores measure prompts the model never saw. Choose a "
        "set in evaluation/prompts whose .meta.json has the model's caption template, or eval.prompt_set=data",
        stacklevel=2,
    )


def shared_initial_weights(first: str | Path, second: str | Path) -> int | None:
    """The seed of two trained domain CLIPs that began from identical weights, else None.

    The domain-CLIP trainer draws initial weights from the seed alone, so one seed and one
    architecture give the same start whatever the split; folders without a record (not trained
    here) give None.
    """
    try:
        keys = [read_metrics(folder).get("key") or {} for folder in (first, second)]
    except FileNotFoundError:
        return None
    same = all(key.get(field) == keys[0].get(field) for key in keys for field in ("seed", "model_cfg"))
    return keys[0].get("seed") if same and "seed" in keys[0] else None


def check_judge_independence(judge_dir: Path, conditioning: Path) -> None:
    """The judge must not be the model's own text encoder, nor start from its initial weights: a
    judge that shares the encoder's init may agree with it more than with the images (README,
    "judge independence")."""
    if conditioning.resolve() == judge_dir.resolve():
        raise ValueError("the judge must not be the conditioning encoder; give eval.judge its own seed")
    seed = shared_initial_weights(judge_dir, conditioning)
    if seed is not None:
        warnings.warn(
            f"the judge and the conditioning domain CLIP have the same architecture and seed ({seed}), so both "
            "started from the same weights and the judge is not independent of the model it scores. Set "
            "eval.judge.seed to a seed that no text_encoder.seed of the compared runs uses",
            stacklevel=2,
        )


def auto_prompt_set(schema: Any) -> str:
    """``eval.prompt_set=auto``: the first general built-in set whose captions have the data's
    caption form and only its attribute values (a model trained on a subset of colours is not asked
    for the others), else ``data``: the reference split's own captions (an image folder)."""
    if schema is not None:
        for name in GENERAL_PROMPT_SETS:
            template = load_prompt_set(name).template
            if template.template == schema.template and all(
                set(values) <= set(schema.values.get(key, ())) for key, values in template.values.items()
            ):
                return name
    return DATA_PROMPTS


def load_prompts(cfg: DictConfig, datamodule: Any) -> PromptSet | tuple[list[str], list[dict] | None]:
    """The configured prompt set, or the reference split's own captions (``eval.prompt_set=data``)."""
    name = cfg.eval.prompt_set
    if name == AUTO_PROMPTS:
        name = auto_prompt_set(getattr(datamodule, "schema", None))
    if name != DATA_PROMPTS:
        prompt_set = load_prompt_set(name)
        schema = getattr(datamodule, "schema", None)
        if schema is None:
            raise ValueError(
                f"eval.prompt_set={name} labels its prompts with attributes ({', '.join(prompt_set.template.values)}), "
                f"but the model's data ({type(datamodule).__name__}) has none to check the judge against; use "
                "eval.prompt_set=data (the reference split's captions) or auto"
            )
        warn_if_captions_differ(prompt_set, schema)
        if cfg.eval.max_prompts:
            prompt_set = replace(
                prompt_set,
                prompts=prompt_set.prompts[: cfg.eval.max_prompts],
                attrs=prompt_set.attrs[: cfg.eval.max_prompts],
            )
        return prompt_set
    return data_prompts(datamodule, cfg.eval.reference_split, cfg.eval.max_prompts)


def prompt_params(prompts: PromptSet | tuple[list[str], list[dict] | None], split: str) -> dict[str, Any]:
    """What the evaluated prompts are (``prompts.*`` params: the resolved set, never the config's
    ``eval.prompt_set``, which may say ``auto``); bare captions come from the reference ``split``."""
    if isinstance(prompts, PromptSet):
        return prompts.params
    return {"set": DATA_PROMPTS, "version": f"{split} split", "n": len(prompts[0])}


def describe_prompts(params: Mapping[str, Any], configured: str, samples_per_prompt: int) -> str:
    """One console line saying which prompts an evaluation generates (``configured``: eval.prompt_set)."""
    chosen = f"eval.prompt_set={configured}" + (" chose it" if configured == AUTO_PROMPTS else "")
    if params["set"] == DATA_PROMPTS:
        return (f"Prompts: the first {params['n']} captions of the {params['version']} ({chosen}: the reference "
                f"split's captions), {samples_per_prompt} images each")
    return (f"Prompts: {params['n']} from the set {params['set']!r} version {params['version']} ({chosen}), "
            f"{samples_per_prompt} images each")


def renders(schema: Any, attrs: Mapping[str, str], caption: str) -> bool:
    """``caption`` is the schema's caption of ``attrs`` (not a noisy or free-form caption)."""
    try:
        return schema.caption(attrs) == caption
    except ValueError:
        return False


def data_prompts(datamodule: Any, split: str, max_prompts: int = 0) -> PromptSet | tuple[list[str], None]:
    """The captions of ``split`` as prompts; as a prompt set with their attributes (so attribute
    accuracy is measured) when the data has a caption schema and every caption is its rendering of
    the item's attributes, else the bare captions."""
    dataset = datamodule.dataset(split)
    items = [dataset[i] for i in range(min(max_prompts or len(dataset), len(dataset)))]
    prompts = [item["text"] for item in items]
    schema = getattr(datamodule, "schema", None)
    attrs = [dict(item.get("attrs") or {}) for item in items]
    if schema is None or not all(renders(schema, a, text) for a, text in zip(attrs, prompts)):
        return prompts, None
    return PromptSet(DATA_PROMPTS, f"{split} split", tuple(prompts), tuple(attrs), schema_template(schema))


def schema_template(schema: Any) -> CaptionTemplate:
    """The data's caption schema as the evaluation's template (``evaluation`` never imports ``mjexp``)."""
    return CaptionTemplate(schema.template, {key: tuple(values) for key, values in schema.values.items()})


def folder_template(prompt_set: str, schema: Any) -> CaptionTemplate | None:
    """What the attrs of a scored image folder are read with: a named set's template, else (``auto``,
    ``data``) the data's caption schema; None without one."""
    if prompt_set not in (AUTO_PROMPTS, DATA_PROMPTS):
        return load_prompt_set(prompt_set).template
    return schema_template(schema) if schema is not None else None


def reference_batches(datamodule: Any, split: str) -> Iterator[dict[str, Any]]:
    yield from datamodule.dataloader(split)


def missing_patch_reference(height: int, width: int, resolution: int, native_size: float) -> str | None:
    """Why patch FID has no reference for ``height`` x ``width`` images of data at ``resolution``
    px whose reference images exist up to ``native_size`` px without upscaling, or None when it has one."""
    if height == width and (height == resolution or height <= native_size):
        return None
    why = "the data is square" if height != width else (
        f"the reference images exist up to {native_size:g} px without upscaling (data resolution {resolution}); "
        "an image folder with larger originals has references up to their size"
    )
    return f"no reference at {height}x{width} px: {why}"


class ScoringContext:
    """Everything scoring needs, resolved before any image is generated (the preflight).

    The data (for the judge's split and the reference split), the judge (trained or reused), the
    scorer with its extractors and weights, and the reference statistics with the judge's validity.
    """

    def __init__(self, cfg: DictConfig, data_cfg: Mapping[str, Any], template: Any, conditioning: str | None = None):
        data_cfg = OmegaConf.create(dict(data_cfg))
        self.resolution = int(data_cfg.resolution)
        holdout = data_cfg.get("holdout") or []
        self.holdout = [dict(entry) for entry in OmegaConf.to_container(holdout)] if holdout else []
        self.datamodule = build_datamodule(data_cfg)
        self.template = template
        judge_dir = None
        if cfg.eval.judge.enabled:
            print("Judge: domain CLIP on the judge split (trained now, or reused from the cache)...")
            judge_dir = train_or_reuse_domain_clip(cfg.eval.judge, self.datamodule, split="judge")
            if conditioning:
                check_judge_independence(judge_dir, Path(conditioning))
        self.scorer = Scorer(
            EvalConfig(
                extractors=tuple(cfg.eval.features),
                judge_dir=str(judge_dir) if judge_dir else None,
                weights_paths=dict(cfg.eval.weights_paths),
                clip_models=tuple(tuple(m) for m in cfg.eval.clip_models),
                clip_score_weight=cfg.eval.clip_score_weight,
                prompt_prefix=cfg.eval.prompt_prefix,
                allow_network=cfg.eval.allow_download,
                bootstrap=cfg.eval.bootstrap,
                retrieval_threshold=cfg.eval.judge_retrieval_threshold,
                seed=cfg.eval.seed,
                batch_size=cfg.eval.batch_size,
                device=cfg.eval.device,
                cache_dir=cfg.eval.cache_dir,
            )
        )
        self.data_cfg, self.split = data_cfg, cfg.eval.reference_split
        self.reference = self.scorer.reference(self.reference_set(self.datamodule), template=template)
        if self.reference.validity is not None:
            print(self.reference.validity.describe(self.split))
        self._patch_references: dict[int, PatchMoments] = {}

    def reference_set(self, datamodule: Any) -> ReferenceSet:
        """The reference split of ``datamodule`` (the data at its own resolution)."""
        split = self.split
        return ReferenceSet(
            fingerprint=datamodule.fingerprint(split),
            split=split,
            resolution=datamodule.resolution,
            n=len(datamodule.dataset(split)),
            batches=lambda: reference_batches(datamodule, split),
        )

    def reference_features(self) -> dict[str, tuple[torch.Tensor, int | None]]:
        """Per FID extractor: the reference features and the extractor's rank bound."""
        return {
            name: (self.reference.features[name].features, extractor.feature_rank)
            for name, extractor in self.scorer.plan.extractors.items()
        }

    def patch_reference(self, size: int) -> PatchMoments:
        """The reference's window statistics at ``size`` px (patch FID): the reference split itself
        at the data's resolution, else the same split made at ``size`` from its originals (only up to
        their size: :func:`missing_patch_reference`)."""
        if size not in self._patch_references:
            datamodule = self.datamodule
            if size != self.resolution:
                print(f"Patch FID reference: the {self.split} split made at {size} px")
                datamodule = build_datamodule(OmegaConf.merge(self.data_cfg, {"resolution": size}))
            self._patch_references[size] = self.scorer.patch_reference(self.reference_set(datamodule))
        return self._patch_references[size]

    def score(self, images: torch.Tensor, prompts: list[str], attrs: list[dict] | None, seeds: list[int] | None = None):
        """Scores; when the generator's data held attribute combinations out of training, attribute
        accuracy of single-object prompts is also split into held-out and seen prompts
        (``attr_acc/judge/heldout/...``)."""
        height, width = images.shape[-2:]
        missing = missing_patch_reference(height, width, self.resolution, self.datamodule.native_size(self.split))
        patches = None if missing else self.patch_reference(height)
        result = self.scorer.score(
            images, prompts, self.reference, attrs=attrs, template=self.template if attrs else None, seeds=seeds,
            patches=patches,
        )
        if missing:
            result.params["patch_fid"] = {"not_reported": missing}
        prefix = "attr_acc/judge/"
        correct = {k[len(prefix):]: v for k, v in result.per_item.items() if k.startswith(prefix)}
        if attrs and self.holdout and correct and not self.template.multi_object:
            result.metrics.update(holdout_accuracy(correct, attrs, self.holdout, prefix.rstrip("/")))
        return result


class SettingOutcome(NamedTuple):
    """One setting's report record, its image grids per stage, per-image mean attribute accuracy
    and the final images' features per FID extractor and files (in manifest order, for paired tests)."""

    record: dict[str, Any]
    grids: dict[str, SampleGrid]
    flags: np.ndarray | None
    features: dict[str, torch.Tensor]
    files: list[Path]  # the final images, manifest order
    diversity: dict[str, Diversity]  # per-prompt diversity of the final images, by metric name
    patches: PatchMoments | None  # window statistics of the final images (patch FID)
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
        self.settings = expand_grid(cfg.eval.grid)
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
        records, grids, per_item, files, diversities, patches, features, runs = [], {}, [], [], [], [], [], []
        self.tracker.log_params({"prompts": {**prompt_params(self.prompts, cfg.eval.reference_split), "samples_per_prompt": n},
                                 "grid": {"n_settings": len(self.settings)}})
        for number, overrides in enumerate(self.settings, 1):
            label = setting_label(overrides)
            sampling = apply_overrides(cfg, overrides)
            print(f"[{number}/{len(self.settings)}] {label}: {describe_sampling(sampling)}")
            outcome = self.evaluate_setting(sampling, label, overrides)
            records.append(outcome.record)
            per_item.append(outcome.flags)
            files.append(outcome.files)
            diversities.append(outcome.diversity)
            patches.append(outcome.patches)
            features.append(outcome.features)
            runs.append(outcome.run)
            grids.update(outcome.grids)
        add_paired_comparisons(records, per_item)
        add_paired_diversity(records, diversities)
        add_paired_patch_fid(records, patches, self.context.patch_reference, cfg.eval.bootstrap, cfg.eval.seed)
        add_paired_fid(records, features, self.context.reference_features(), cfg.eval.bootstrap, cfg.eval.seed,
                       cfg.eval.device)
        log_paired_metrics(records, runs)
        grids.update(disagreement_grids(records, per_item, files))
        paths = write_report(records, self.out_dir, grids, title=f"mjexp evaluation: {cfg.name}")
        for path in paths.values():
            self.tracker.log_artifact(path, "report")
        print_table(records)
        return records

    def evaluate_setting(
        self, sampling: DictConfig, label: str, overrides: Mapping[str, Any]
    ) -> SettingOutcome:
        cfg, n = self.cfg, self.cfg.eval.samples_per_prompt
        sampler, guidance, hires, negative = sampling_settings(sampling)
        module = GuidanceSampler(
            self.loaded.unet, self.loaded.text_encoder, self.loaded.schedule, self.resolution,
            sampler, guidance, hires, negative, seed=cfg.eval.seed,
            runtime=Runtime(cfg.eval.precision, cfg.eval.compile, cfg.eval.cuda_graphs), sr_model=self.sr_model,
        )
        folder = self.out_dir / "generated" / label
        settings = OmegaConf.to_container(sampling, resolve=True)
        before = read_manifest(folder)
        start = time.perf_counter()
        manifest = generate_to_folder(
            module, self.prompt_list, n, folder, settings, cfg.eval.batch_size,
            trainer_kwargs={"enable_progress_bar": cfg.eval.progress_bar, "accelerator": cfg.eval.device},
            model=images_fingerprint(self.loaded, self.sr_model if hires.uses_sr else None),
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
        return SettingOutcome(
            record, grids, mean_attribute_flags(result.per_item), result.features, files, result.diversity,
            result.patches, child,
        )


TABLE_METRICS = 6  # metric columns per console table


def print_table(records: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    names = sorted({k for r in records for k in r["metrics"] if not k.startswith("cost/") and k.count("/") <= 2
                    and not k.endswith(("/se", "/std", "/ci_low", "/ci_high"))})
    unreliable = any(r.get("unreliable_metrics") for r in records)
    # A few metrics per table, so that no column is cut short: rows must stay tell-apart-able.
    for start in range(0, len(names), TABLE_METRICS):
        part = names[start : start + TABLE_METRICS]
        table = Table(title="Evaluation" + (f" ({start // TABLE_METRICS + 1})" if len(names) > TABLE_METRICS else ""))
        table.add_column("setting", no_wrap=True)
        table.add_column("nfe", justify="right")
        for name in part:
            table.add_column(name, justify="right", no_wrap=True)
        for r in records:
            cells = [f"{r['metrics'][n]:.4g}" + (" †" if n in r.get("unreliable_metrics", ()) else "")
                     if n in r["metrics"] else "" for n in part]
            table.add_row(r["label"], str(r["nfe"]), *cells)
        console = Console(width=10_000)  # never truncate; the table is as wide as its content
        console.print(table, width=console.measure(table).maximum)
    if unreliable:
        print("  † the judge failed a validity check on real images: these judge metrics are not to be trusted")
    for r in records:
        paired = r.get("paired_vs_first")
        if paired:
            print(f"  {r['label']} vs {paired['baseline']}: attribute accuracy {paired['difference']:+.3f} "
                  f"± {paired['standard_error']:.3f} (paired SE, z={paired['z']:.1f}); all attributes right in "
                  f"{paired['fixed']} images only here, in {paired['broken']} only in the baseline")
        fids = r.get("paired_fid_vs_first", {})
        for metric, d in fids.get("metrics", {}).items():
            print(f"  {r['label']} vs {fids['baseline']}: {metric} {d['difference']:+.4f} ± "
                  f"{d['standard_error']:.4f} (paired bootstrap SE, z={d['z']:.1f})")
        patch = r.get("paired_patch_fid_vs_first")
        if patch:
            print(f"  {r['label']} vs {patch['baseline']}: patch_fid {patch['difference']:+.4f} ± "
                  f"{patch['standard_error']:.4f} (paired bootstrap SE, z={patch['z']:.1f})")
        diversity = r.get("paired_diversity_vs_first", {})
        for metric, d in diversity.get("metrics", {}).items():
            print(f"  {r['label']} vs {diversity['baseline']}: {metric} {d['difference']:+.4f} ± "
                  f"{d['standard_error']:.4f} (paired SE over {d['n_prompts']} prompts, z={d['z']:.1f})")


def evaluate_grid(
    cfg: DictConfig, ckpt: str | Path, tracker: Tracker, out_dir: Path, ends_training: bool = False
) -> dict[str, float]:
    """Run the grid evaluation and return headline metrics (``eval/<label>/<metric>``)."""
    records = GridEvaluation(cfg, ckpt, tracker, out_dir, ends_training).run()
    return {f"eval/{r['label']}/{k}": float(v) for r in records for k, v in r["metrics"].items()}


def read_image_folder(folder: Path) -> tuple[torch.Tensor, list[str], list[dict] | None]:
    """A folder of generated images with ``metadata.jsonl`` rows ``{"file_name", "text"[, "attrs"]}``
    (files inside the folder: a report shows them, so a row must not reach other files of this machine)."""
    from PIL import Image

    from mjexp.data.imagefolder import check_inside_root

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


def run_evaluation(cfg: DictConfig) -> dict[str, float]:
    """``python -m mjexp.eval``: one parent MLflow run (tagged with the evaluated training run)."""
    from mjexp.config import validate
    from mjexp.run_lock import run_folder_lock
    from mjexp.signals import final_status
    from mjexp.training import open_tracker

    validate(cfg)
    if (cfg.ckpt is None) == (cfg.images is None):
        raise ValueError("give exactly one of ckpt=PATH (export folder, .ckpt or mlflow:<run_id>) or images=DIR")
    out_dir = Path(cfg.output_dir)
    with run_folder_lock(out_dir):
        tracker = open_tracker(cfg, out_dir, None)
        try:
            tracker.set_tags({"mjexp.evaluates": evaluated_run(cfg.ckpt) if cfg.ckpt else str(cfg.images)})
            if cfg.ckpt:
                metrics = evaluate_grid(cfg, cfg.ckpt, tracker, out_dir)
            else:
                metrics = score_folder(cfg, cfg.images, tracker, out_dir)
            tracker.finish("FINISHED")
        except BaseException as error:
            tracker.finish(final_status(error), error=repr(error))
            raise
    print(f"Report: {out_dir / 'report.html'}\nMLflow: {tracker.ui_hint}")
    return metrics


def evaluated_run(ckpt: str) -> str:
    """The MLflow run that produced a checkpoint, when it can be told; else the reference itself."""
    if ckpt.startswith("mlflow:"):
        return ckpt[len("mlflow:") :]
    path = Path(ckpt)
    for info in (path / "run.json", path.parent / "run.json", path.parent.parent / "run.json"):
        if info.is_file():
            run_id = json.loads(info.read_text()).get("mlflow_run_id")
            if run_id:
                return run_id
    return str(path)
