"""Start-up validation of a composed config: every key known, values in range, fields consistent.

Runs first in every command (before any folder, run or model exists) and raises one
:class:`ConfigError` listing every problem, each naming the full key and what is allowed.
"""

from __future__ import annotations

import difflib
from typing import Any, get_args

from omegaconf import DictConfig, OmegaConf

from mjexp.autoencoder.autoencoder_settings import AutoencoderSettings, downsampling_factor
from mjexp.config.domain import build
from mjexp.config.grid import GRID_KEYS, eval_settings, flatten_grid
from mjexp.config.schema import DATA_SCHEMAS, ROOT_SCHEMAS, TEXT_SCHEMAS
from mjexp.data.dataset_settings import DATA_SETTINGS, caption_noise_problems
from mjexp.diffusion.schedules import ScheduleSettings
from mjexp.diffusion.superres import SuperResolution
from mjexp.diffusion.training_module import DiffusionSettings, OptimSettings, Weights
from mjexp.sampling.guidance import Guidance
from mjexp.sampling.hires import HiresSettings
from mjexp.sampling.samplers import SamplerSettings


class ConfigError(ValueError):
    """A config value that cannot work; the message names the full key."""


# Free-form nodes: eval.grid and eval.extra_grids are checked by mjexp.config.grid.eval_settings; the others hold user-named entries.
FREE_FORM = ("hydra", "eval.grid", "eval.extra_grids", "eval.weights_paths")


def _reference(cfg: DictConfig) -> DictConfig:
    """The schema ``cfg`` was composed from: its command's root, with the schemas of the chosen
    data and text encoder (a command's root is told apart by a key only it has)."""
    root = "train" if "trainer" in cfg else "eval" if "images" in cfg else "sample"
    reference = OmegaConf.structured(ROOT_SCHEMAS[root])
    for group, schemas in (("data", DATA_SCHEMAS), ("text_encoder", TEXT_SCHEMAS)):
        name = OmegaConf.select(cfg, f"{group}.name", default=None)
        if name in schemas:
            OmegaConf.update(reference, group, OmegaConf.structured(schemas[name]), force_add=True)
    return reference


def _dotted_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    for key in node:
        full = f"{prefix}{key}"
        if full in FREE_FORM:
            continue
        keys.append(full)
        child = node._get_node(key)
        if OmegaConf.is_dict(child) and not child._is_missing() and not child._is_none():
            keys += _dotted_keys(child, full + ".")
    return keys


def unknown_keys(cfg: DictConfig) -> list[str]:
    """One message per key of ``cfg`` that its schema does not have, naming the closest valid key."""
    known = _dotted_keys(_reference(cfg))
    problems = []
    for key in _dotted_keys(cfg):
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else "no similar key exists"
            problems.append(f"unknown key {key} ({hint})")
    return problems


# ---- validation ------------------------------------------------------------------------------
CHOICES: dict[str, tuple[str, ...]] = {
    "trainer.accelerator": ("cpu", "gpu", "cuda", "mps", "auto"),
    "eval.weights": get_args(Weights),
    "weights": get_args(Weights),
    "eval.reference_split": ("test", "val", "train", "judge"),
    "eval.precision": ("auto", "32", "bf16"),
    "precision": ("auto", "32", "bf16"),
}

# (key, lower bound, upper bound, inclusive lower?) for numeric ranges.
RANGES: tuple[tuple[str, float, float, bool], ...] = (
    ("trainer.max_steps", 1, float("inf"), True),
    ("trainer.progress_every_n_steps", 1, float("inf"), True),
    ("trainer.sample_every_n_steps", 0, float("inf"), True),
    ("trainer.accumulate_grad_batches", 1, float("inf"), True),
    ("eval.samples_per_prompt", 1, float("inf"), True),
    ("eval.batch_size", 1, float("inf"), True),
    ("eval.judge_retrieval_threshold", 0.0, 1.0, True),
    ("n", 1, float("inf"), True),
    ("batch_size", 1, float("inf"), True),
)


def _get(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None)


def validate(cfg: DictConfig) -> None:
    """Check value ranges, choices and cross-field constraints; raise one ConfigError listing all."""
    problems: list[str] = unknown_keys(cfg)
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        if value is not None and value not in allowed:
            problems.append(f"{key}={value!r} is not one of {', '.join(allowed)}")
    for key, low, high, inclusive in RANGES:
        value = _get(cfg, key)
        if value is None:
            continue
        too_low = value < low if inclusive else value <= low
        if too_low or value > high:
            bracket = "[" if inclusive else "("
            problems.append(f"{key}={value} is outside {bracket}{low}, {high}]")
    problems += _domain_problems(cfg)
    problems += _cross_field_problems(cfg)
    grid = _get(cfg, "eval.grid")
    # Training evaluates only when a grid is given; `mjexp.eval` (no `evaluate` key) needs one.
    if grid is not None and (grid or _get(cfg, "evaluate") is None):
        try:
            eval_settings(cfg.eval)
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def _domain_problems(cfg: DictConfig) -> list[str]:
    """Each group a domain object describes is built as the run will build it; its own checks
    (``__post_init__``: the one place a range is written) name the key and the allowed values."""
    builders = []
    data = _get(cfg, "data.name")
    if data in DATA_SETTINGS:
        builders.append(lambda: build(DATA_SETTINGS[data], cfg.data))
    if _get(cfg, "schedule") is not None:
        builders.append(lambda: build(ScheduleSettings, cfg.schedule))
    if _get(cfg, "sampler") is not None:
        builders += [lambda: build(SamplerSettings, cfg.sampler), lambda: build(Guidance, cfg.guidance),
                     lambda: build(HiresSettings, cfg.hires)]
    if _get(cfg, "diffusion") is not None:
        builders += [lambda: build(DiffusionSettings, cfg.diffusion),
                     lambda: build(OptimSettings, cfg.optim, total_steps=cfg.trainer.max_steps)]
    if _get(cfg, "sr.enabled"):
        builders.append(lambda: build(SuperResolution, cfg.sr, resolution=cfg.data.resolution))
    if _get(cfg, "autoencoder") is not None:
        builders.append(lambda: build(AutoencoderSettings, cfg.autoencoder))
    problems = []
    for make in builders:
        try:
            make()
        except ValueError as error:
            problems.append(str(error))
    encoder_noise = _get(cfg, "text_encoder.caption_noise")  # the domain CLIP's own train captions
    if encoder_noise is not None:
        problems += caption_noise_problems("text_encoder.caption_noise", encoder_noise)
    return problems


def _cross_field_problems(cfg: DictConfig) -> list[str]:
    problems: list[str] = []
    factor = 2 ** (len(_get(cfg, "unet.channel_mult") or [1]) - 1)
    resolution = _get(cfg, "data.resolution")
    why = f"the U-Net downsamples {factor}x (unet.channel_mult has {factor.bit_length()} levels)"
    if _get(cfg, "autoencoder.name") == "kl":  # a pretrained one's factor is checked when it loads
        latent = downsampling_factor(_get(cfg, "autoencoder.block_out_channels") or [1])
        why = f"the autoencoder downsamples {latent}x (autoencoder.block_out_channels) and then " + why
        factor *= latent
    if resolution is not None and resolution % factor:
        problems.append(f"data.resolution={resolution} must be divisible by {factor}: {why}")
    if _get(cfg, "hires.enabled") and resolution is not None:
        target = round(resolution * _get(cfg, "hires.scale"))
        if target % factor:
            problems.append(
                f"hires.scale={_get(cfg, 'hires.scale')} gives {target} px, not divisible by {factor}: {why}"
            )
    if _get(cfg, "schedule.zero_terminal_snr") and _get(cfg, "diffusion.parameterization") == "eps":
        problems.append(
            "schedule.zero_terminal_snr=true needs diffusion.parameterization=v or x0: at SNR 0 an "
            "eps prediction says nothing about the image (Lin et al. 2024, Sec. 3.2)"
        )
    levels = len(_get(cfg, "unet.channel_mult") or [])
    for level in _get(cfg, "unet.attention_levels") or []:
        if not 0 <= level < levels:
            problems.append(f"unet.attention_levels contains {level}; levels are 0..{levels - 1}")
    for prefix in ("eval.", ""):
        if _get(cfg, prefix + "cuda_graphs") and _get(cfg, prefix + "device") not in ("cuda", "gpu"):
            problems.append(
                f"{prefix}cuda_graphs=true needs {prefix}device=cuda (got {_get(cfg, prefix + 'device')!r}): "
                "CUDA graphs exist only on NVIDIA GPUs"
            )
    return problems + _super_resolution_problems(cfg)


def _swept(cfg: DictConfig, key: str) -> list[Any]:
    """The values ``key`` takes over the evaluated settings: the ``eval.grid`` axis, else the config's."""
    grid = _get(cfg, "eval.grid")
    if grid:
        for axis, options in flatten_grid(grid).items():
            if GRID_KEYS.get(axis) == key:
                return list(options) if isinstance(options, (list, tuple)) else [options]
    return [_get(cfg, key)]


def _super_resolution_problems(cfg: DictConfig) -> list[str]:
    problems: list[str] = []
    if _get(cfg, "sr.enabled") and _get(cfg, "evaluate") and _get(cfg, "eval.grid"):
        problems.append(
            "sr.enabled=true with an eval.grid: a super-resolution model is evaluated through a base model's "
            "hires fix (python -m mjexp.eval ckpt=<base> hires=sr hires.model=<this export>); drop eval.grid"
        )
    if _get(cfg, "sr.enabled") and _get(cfg, "trainer.sample_every_n_steps"):
        problems.append(
            "sr.enabled=true with trainer.sample_every_n_steps: a super-resolution model samples only inside a base "
            "model's hires fix (it needs a low-resolution image); set trainer.sample_every_n_steps=0"
        )
    model, uses_sr = _get(cfg, "hires.model"), "sr" in _swept(cfg, "hires.upscaler")
    if uses_sr and True in _swept(cfg, "hires.enabled") and not model:
        problems.append(
            "hires.upscaler=sr needs hires.model=<export folder, .ckpt or mlflow:<run_id>> of a super-resolution "
            "model (train one with +experiment=train_sr)"
        )
    if model and not uses_sr:
        problems.append(
            f"hires.model={model} is only used with hires.upscaler=sr (got hires.upscaler={_get(cfg, 'hires.upscaler')}); "
            "set hires=sr or drop hires.model"
        )
    return problems
