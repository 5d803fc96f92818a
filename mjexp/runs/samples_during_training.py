"""Sample grids and the judge's attribute accuracy while a model trains (``trainer.sample_every_n_steps``).

Every N optimizer steps the EMA weights generate one frame: the same few prompts, spread over
the evaluation's prompt set (``eval.prompt_set``), a few images each, with the evaluation's seed
(``eval.seed``), so frames differ only in the weights (and an item's noise is that of the same
item in the final evaluation). It is logged to the training's MLflow run as
``samples/step_NNNNNN.png``; with a judge (``eval.judge.enabled`` and prompts with attributes) the
attribute accuracy of its images as ``during_training/attr_acc/judge/<attribute>`` and ``/mean``
at that step, and on the built-in shapes also the exact rule's reading and the judge's agreement
with it (``during_training/attr_acc/rule/...``, ``during_training/judge_agreement/...``). The judge is trained (or reused) before the diffusion model, so a first run has it
at the first frame; without one the run says once why there is no metric.

The training is the same with it as without: the frames draw from their own generators (and the
global ones are put back after each frame), use the EMA networks and a copy of a frozen text
encoder (whose embedding cache the training reads), and only the primary process samples.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from evaluation import Scorer, ScoringConfig
from evaluation.grids import SampleGrid, grid_png
from evaluation.metrics.rule_reading import AGREEMENT
from evaluation.prompt_sets import CaptionTemplate, PromptSet
from mjexp.autoencoder.codec import LatentCodec
from mjexp.diffusion import random_state
from mjexp.files.checkpoints import atomic_write
from mjexp.runs import signals
from mjexp.runs.components import describe_sampling
from mjexp.runs.eval_run.prompts import load_prompts, prompt_params
from mjexp.runs.eval_run.scoring import RULE_READABLE_DATA, train_or_reuse_judge
from mjexp.runs.models import guidance_sampler
from mjexp.runs.tracker import is_primary_process
from mjexp.sampling.guidance_sampler import GuidanceSampler
from mjexp.sampling.runtime import Runtime
from mjexp.tracking.mlflow import Tracker

# A frame: 8 prompts x 4 images, 32 images (a grid a person takes in at a glance, and enough
# images for the judge to move by steps of 1/32).
FRAME_PROMPTS = 8
FRAME_SAMPLES = 4
SAMPLES_DIR = "samples"  # in the output folder and among the run's MLflow artifacts
METRIC_PREFIX = "during_training/"
ATTRIBUTE_ACCURACY = "attr_acc/"  # the Scorer's names: attr_acc/judge/<attribute>, /mean; attr_acc/rule/... (shapes)
MEAN_ACCURACY = "attr_acc/judge/mean"


def spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``n <= k``): a prompt set
    lists its combinations in order (every red prompt first), so its first ``k`` would show one colour."""
    return list(range(n)) if n <= k else [i * n // k for i in range(k)]


@dataclass(frozen=True)
class Frame:
    """What every frame shows: ``prompts`` (rows), their indices in the prompt set (which give the
    items' noise) and their attributes (None: the prompts have none to judge)."""

    prompts: list[str]
    indices: list[int]
    attrs: list[dict[str, str]] | None

    @property
    def items(self) -> list[tuple[int, int]]:
        """(prompt index, sample index) of each image, row by row."""
        return [(i, j) for i in self.indices for j in range(FRAME_SAMPLES)]

    @property
    def item_prompts(self) -> list[str]:
        return [p for p in self.prompts for _ in range(FRAME_SAMPLES)]

    @property
    def item_attrs(self) -> list[dict[str, str]] | None:
        return None if self.attrs is None else [a for a in self.attrs for _ in range(FRAME_SAMPLES)]


@dataclass(frozen=True)
class Judge:
    """The evaluation's judge, loaded once, and the template its attribute accuracy reads prompts with."""

    scorer: Scorer
    template: CaptionTemplate


class SamplesDuringTraining(L.Callback):
    """Logs a frame every ``every_n_steps`` optimizer steps (see the module docstring)."""

    def __init__(
        self, every_n_steps: int, frame: Frame, sampling: DictConfig, seed: int, runtime: Runtime, batch_size: int,
        resolution: int, folder: Path, tracker: Tracker, judge: Judge | None, codec: LatentCodec | None = None,
    ) -> None:
        self.every_n_steps, self.frame, self.sampling, self.seed = every_n_steps, frame, sampling, seed
        self.runtime, self.batch_size, self.resolution = runtime, batch_size, resolution
        self.folder, self.tracker, self.judge, self.codec = folder, tracker, judge, codec
        self._sampler: GuidanceSampler | None = None
        self._last_step: int | None = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        # A step's batches (gradient accumulation) all end at its count; a stop signal wants a
        # checkpoint (StepCheckpoint, after this callback), not a frame first.
        if (step == 0 or step % self.every_n_steps or step == self._last_step or not trainer.is_global_zero
                or signals.requested() is not None):
            return
        self._last_step = step
        state = random_state.capture()
        try:
            self.log_frame(pl_module, step)
        finally:
            random_state.restore(state)

    def sampler(self, pl_module: L.LightningModule) -> GuidanceSampler:
        """The EMA networks as a sampler, built at the first frame (on the training's device).

        A frozen text encoder is the training's own module: its embedding cache (which the
        training reads, and which moving it clears) is not sampling's to change, so sampling
        gets a copy; a trainable one has its EMA copy already.
        """
        if self._sampler is None:
            unet, encoder = pl_module.sampling_networks("ema")
            if not encoder.trainable:
                encoder = copy.deepcopy(encoder)
            self._sampler = guidance_sampler(
                unet, encoder, pl_module.schedule, self.resolution, self.sampling, self.seed, self.runtime,
                codec=self.codec,
            ).to(pl_module.device)
        return self._sampler

    def images(self, pl_module: L.LightningModule) -> torch.Tensor:
        """The frame's images in [-1, 1] (N, 3, H, W), on the CPU."""
        sampler, items, prompts = self.sampler(pl_module), self.frame.items, self.frame.item_prompts
        chunks = [
            sampler.generate(prompts[start:start + self.batch_size], items[start:start + self.batch_size])["images"].cpu()
            for start in range(0, len(items), self.batch_size)
        ]
        return torch.cat(chunks)

    def log_frame(self, pl_module: L.LightningModule, step: int) -> None:
        start = time.perf_counter()
        images = self.images(pl_module)
        grid = SampleGrid(images, self.frame.prompts, FRAME_SAMPLES, f"step {step}: {describe_sampling(self.sampling)}")
        path = self.folder / f"step_{step:06d}.png"
        png = grid_png(grid)
        atomic_write(path, lambda tmp: tmp.write_bytes(png))
        self.tracker.log_artifact(path, SAMPLES_DIR)
        line = f"samples at step {step}: {path}"
        if self.judge is not None:
            result = self.judge.scorer.score(
                images, self.frame.item_prompts, attrs=self.frame.item_attrs, template=self.judge.template
            )
            accuracy = {k: v for k, v in result.metrics.items() if k.startswith((ATTRIBUTE_ACCURACY, AGREEMENT))}
            self.tracker.log_metrics({METRIC_PREFIX + k: v for k, v in accuracy.items()}, step=step)
            line += f", {MEAN_ACCURACY} {accuracy[MEAN_ACCURACY]:.3f}"
        print(f"{line} ({len(images)} images, {time.perf_counter() - start:.1f} s)", flush=True)


def frame_sampling(cfg: DictConfig) -> DictConfig:
    """The training config's sampler and guidance, without the hires fix: a frame shows the model
    at its own resolution (a second pass would cost more than the frame and show the upscaler too).
    Plain values, not the schema's classes: ``ddp_spawn`` pickles the callback into its processes."""
    groups = {"sampler": cfg.sampler, "guidance": cfg.guidance, "hires": OmegaConf.merge(cfg.hires, {"enabled": False})}
    return OmegaConf.create({name: OmegaConf.to_container(group, resolve=True) for name, group in groups.items()})


def samples_during_training(
    cfg: DictConfig, datamodule: Any, tracker: Tracker, output_dir: Path, conditioning: Path | None,
    codec: LatentCodec | None = None,
) -> SamplesDuringTraining | None:
    """The callback of ``trainer.sample_every_n_steps`` (None when it is 0, and in the other
    processes of a distributed run), with the judge trained (or reused) now, before the diffusion
    model trains. ``conditioning``: the model's domain CLIP folder, which the judge must not be."""
    every = cfg.trainer.sample_every_n_steps
    if not every or not is_primary_process():
        return None
    prompts = load_prompts(cfg, datamodule)
    if isinstance(prompts, PromptSet):
        texts, attrs, template = list(prompts.prompts), list(prompts.attrs), prompts.template
    else:
        (texts, attrs), template = prompts, None
    indices = spread(len(texts), FRAME_PROMPTS)
    frame = Frame([texts[i] for i in indices], indices, None if attrs is None else [dict(attrs[i]) for i in indices])
    judge, missing = None, None
    if not cfg.eval.judge.enabled:
        missing = "eval.judge.enabled=false"
    elif template is None:
        params = prompt_params(prompts, cfg.eval.reference_split)
        missing = f"the prompts ({params['set']}: {params['version']}) have no attributes to judge"
    else:
        judge_dir = train_or_reuse_judge(cfg, datamodule, conditioning)
        scorer = Scorer(ScoringConfig(
            extractors=(), judge_dir=str(judge_dir), batch_size=cfg.eval.batch_size, device=cfg.eval.device,
            seed=cfg.eval.seed, cache_dir=cfg.eval.cache_dir, rule_reader=cfg.data.name == RULE_READABLE_DATA,
        ))
        judge = Judge(scorer, template)
    sampling = frame_sampling(cfg)
    logged = f"{SAMPLES_DIR}/step_NNNNNN.png" + ("" if judge is None else f" and {METRIC_PREFIX}{ATTRIBUTE_ACCURACY}judge/*")
    print(f"Samples during training: every {every} steps, {len(indices)} prompts x {FRAME_SAMPLES} images of the EMA "
          f"weights ({describe_sampling(sampling)}), logged as {logged}"
          + ("" if missing is None else f"; no attribute accuracy: {missing}"))
    folder = output_dir / SAMPLES_DIR
    return SamplesDuringTraining(
        every, frame, sampling, cfg.eval.seed, Runtime(cfg.eval.precision), cfg.eval.batch_size,
        int(cfg.data.resolution), folder, tracker, judge, codec,
    )
