"""The default data: procedurally rendered shapes with compositional captions and true attributes.

A scene is one object (or two, in distinct quadrants) described by colour, shape, position and,
optionally, size: "a red triangle in the top left", "a small blue circle in the bottom right",
"a red circle in the top left and a blue square in the bottom right" (objects in quadrant order).

Determinism: image k of split S is a pure function of (seed, S, k, RENDERER_VERSION, resolution,
options). Its random numbers come from a counter-based hash of (seed, S, renderer version, k, field),
not from a sequential stream, so an image does not depend on the split size, the batch it is
rendered in or the worker that renders it, and the same scene renders at any resolution.
Images are rendered on demand, a batch at a time (``__getitems__``), so no split is held in memory.

Holdout (compositional generalisation): attribute combinations listed in ``holdout`` never appear
in ``train``; ``judge``, ``val`` and ``test`` keep them, because the judge must recognise held-out
scenes to score them and the reference statistics should cover every prompt.

Caption noise (``caption_noise=p``, ``train`` only): with probability p a training caption names one
appearance attribute (colour, shape or size of one object) wrongly, like a web caption that misnames
what it shows. The image and its ``attrs`` stay true; only the text lies. A model that fits such
data samples the noise back at guidance scale 1, and guidance (which sharpens p(caption | image))
is what removes it: the regime in which text-to-image models are trained.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from mjexp.data.captions import CaptionSchema
from mjexp.data.datamodule import CaptionedDataset, CaptionedImageDataModule, Sample
from mjexp.data.images import to_model_range
from mjexp.data.dataset_settings import ShapesSettings, caption_noise_problems
from mjexp.data.splits import check_split
from shapes_world.layout import (
    BACKGROUND,
    BRIGHTNESS,
    CENTER_JITTER,
    DEFAULT_RADIUS,
    POSITION_CENTERS,
    POSITIONS,
    RADIUS_JITTER,
    SIZES,
)
from shapes_world.render import PALETTE, RENDERER_VERSION, SHAPE_NAMES, Scenes, render

DEFAULT_COLORS: tuple[str, ...] = ("red", "yellow", "green", "cyan", "blue", "purple")
DEFAULT_SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
# Attributes that caption noise may misname: appearance words. Positions stay true, so a two-object
# caption keeps its objects in distinct quadrants, in quadrant order.
NOISY_ATTRIBUTES: tuple[str, ...] = ("size", "color", "shape")
# One colour per shape twice over, a diagonal: every colour and shape still appears in train.
DEFAULT_HOLDOUT: tuple[dict[str, str], ...] = (
    {"color": "red", "shape": "circle"},
    {"color": "yellow", "shape": "square"},
    {"color": "green", "shape": "triangle"},
    {"color": "cyan", "shape": "circle"},
    {"color": "blue", "shape": "square"},
    {"color": "purple", "shape": "triangle"},
)

_FIELDS_PER_OBJECT = 4  # centre x, centre y, radius, brightness
_N_FIELDS = 3 + 2 * _FIELDS_PER_OBJECT + 1  # layout, two combo choices, two objects, background


def _choose(name: str, values: tuple[str, ...], allowed: Sequence[str]) -> tuple[str, ...]:
    unknown = [v for v in values if v not in allowed]
    if unknown or not values or len(set(values)) != len(values):
        raise ValueError(f"{name}={list(values)} must be distinct values from {list(allowed)}")
    return values


def _excluded(obj: Mapping[str, str], exclude: Sequence[Mapping[str, str]]) -> bool:
    """Whether the object {attribute: value} matches any holdout entry."""
    return any(all(obj[k] == v for k, v in entry.items()) for entry in exclude)


@dataclass(frozen=True)
class ShapesSpec:
    """The vocabulary and layout options; everything about a scene except its random draws."""

    colors: tuple[str, ...] = DEFAULT_COLORS
    shapes: tuple[str, ...] = DEFAULT_SHAPES
    two_objects: bool = False
    with_size: bool = False
    object_values: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "colors", _choose("colors", tuple(self.colors), tuple(PALETTE)))
        object.__setattr__(self, "shapes", _choose("shapes", tuple(self.shapes), SHAPE_NAMES))
        values = {"color": self.colors, "shape": self.shapes, "position": POSITIONS}
        if self.with_size:
            values = {"size": tuple(SIZES), **values}
        object.__setattr__(self, "object_values", values)

    def schema(self) -> CaptionSchema:
        """Caption template and vocabulary; two-object attributes carry suffixes ``_1`` and ``_2``."""
        one = "a {size} {color} {shape} in the {position}" if self.with_size else "a {color} {shape} in the {position}"
        if not self.two_objects:
            return CaptionSchema(one, self.object_values)
        slots = [one.replace("}", f"_{i}}}") for i in (1, 2)]
        values = {f"{name}_{i}": v for i in (1, 2) for name, v in self.object_values.items()}
        return CaptionSchema(" and ".join(slots), values)

    def check_holdout(self, holdout: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
        """Validate holdout entries: each a non-empty {attribute: value} over single-object attributes."""
        checked = []
        for entry in holdout:
            entry = dict(entry)
            bad = {k: v for k, v in entry.items() if k not in self.object_values or v not in self.object_values[k]}
            if not entry or bad:
                raise ValueError(
                    f"holdout entry {entry} is invalid ({bad or 'empty'}); keys and values must come from "
                    f"{ {k: list(v) for k, v in self.object_values.items()} }"
                )
            checked.append(entry)
        return checked

    def object_table(self, exclude: Sequence[Mapping[str, str]] = ()) -> np.ndarray:
        """Allowed object combinations as value indices (M, attributes), grouped by position."""
        names = list(self.object_values)
        rows = [
            combo
            for combo in itertools.product(*(range(len(v)) for v in self.object_values.values()))
            if not _excluded({name: self.object_values[name][i] for name, i in zip(names, combo)}, exclude)
        ]
        table = np.array(rows, dtype=np.int64).reshape(-1, len(names))
        table = table[np.argsort(table[:, names.index("position")], kind="stable")]
        missing = sorted(set(POSITIONS) - {POSITIONS[p] for p in table[:, names.index("position")]})
        if missing:
            raise ValueError(f"holdout {list(exclude)} removes every object at positions {missing}")
        return table


def heldout_attrs(spec: ShapesSpec, holdout: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """Single-object attribute combinations that ``holdout`` removes from train (its prompt set)."""
    single = ShapesSpec(spec.colors, spec.shapes, two_objects=False, with_size=spec.with_size)
    entries = single.check_holdout(holdout)
    return [a for a in single.schema().combinations() if _excluded(a, entries)]


def _stream_key(seed: int, split: str, stream: str = "scene") -> np.uint64:
    text = f"mjexp.shapes/v{RENDERER_VERSION}/seed={seed}/split={check_split(split)}"
    if stream != "scene":  # the scene stream keeps its original key: images never change
        text += f"/stream={stream}"
    return np.uint64(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 (Steele et al. 2014): a bijective 64-bit hash; uint64 arithmetic wraps."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def uniforms(
    seed: int, split: str, indices: np.ndarray, fields: int = _N_FIELDS, stream: str = "scene"
) -> np.ndarray:
    """(N, fields) uniforms in [0, 1) for items ``indices``: a pure function of (seed, split, stream, index)."""
    item = _mix(_stream_key(seed, split, stream) ^ np.asarray(indices, dtype=np.uint64))
    bits = _mix(item[:, None] + np.arange(fields, dtype=np.uint64)[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _pick(u: np.ndarray, low: np.ndarray | int, count: np.ndarray | int) -> np.ndarray:
    """Uniform integer in [low, low + count) from u in [0, 1)."""
    return low + np.minimum((u * count).astype(np.int64), np.asarray(count) - 1)


def sample_scenes(
    spec: ShapesSpec, table: np.ndarray, seed: int, split: str, indices: np.ndarray
) -> tuple[Scenes, dict[str, list[str]]]:
    """Scene geometry and attributes for ``indices``, uniform over the rows of ``table``."""
    u = uniforms(seed, split, indices)
    names = list(spec.object_values)
    position = table[:, names.index("position")]
    if spec.two_objects:
        pairs = np.array(list(itertools.combinations(range(len(POSITIONS)), 2)))
        chosen = pairs[_pick(u[:, 0], 0, len(pairs))]  # (N, 2) quadrants in caption order
        starts = np.searchsorted(position, np.arange(len(POSITIONS)))
        counts = np.bincount(position, minlength=len(POSITIONS))
        rows = _pick(u[:, 1:3], starts[chosen], counts[chosen])
    else:
        rows = _pick(u[:, 1:2], 0, len(table))
    objects = table[rows]  # (N, K, attributes)
    k = objects.shape[1]
    jitter = u[:, 3 : 3 + k * _FIELDS_PER_OBJECT].reshape(-1, k, _FIELDS_PER_OBJECT)
    if spec.with_size:
        base = np.array([SIZES[s] for s in spec.object_values["size"]])[objects[..., names.index("size")]]
    else:
        base = np.full(objects.shape[:2], DEFAULT_RADIUS)
    palette = np.array([PALETTE[c] for c in spec.colors], dtype=np.float64)
    shape_ids = np.array([SHAPE_NAMES.index(s) for s in spec.shapes])
    brightness = BRIGHTNESS[0] + (BRIGHTNESS[1] - BRIGHTNESS[0]) * jitter[..., 3]
    scenes = Scenes(
        shape=shape_ids[objects[..., names.index("shape")]],
        center=POSITION_CENTERS[objects[..., names.index("position")]] + CENTER_JITTER * (2 * jitter[..., :2] - 1),
        radius=base * (1 + RADIUS_JITTER * (2 * jitter[..., 2] - 1)),
        color=palette[objects[..., names.index("color")]] * brightness[..., None],
        background=np.repeat(BACKGROUND[0] + (BACKGROUND[1] - BACKGROUND[0]) * u[:, -1:], 3, axis=1),
    )
    suffixes = ["_1", "_2"] if spec.two_objects else [""]
    attrs = {
        f"{name}{suffix}": [spec.object_values[name][i] for i in objects[:, slot, a]]
        for slot, suffix in enumerate(suffixes)
        for a, name in enumerate(names)
    }
    return scenes, attrs


def check_caption_noise(rate: float) -> float:
    """``rate`` as a float; raises when it is no probability."""
    problems = caption_noise_problems("caption_noise", rate)
    if problems:
        raise ValueError(problems[0])
    return float(rate)


def caption_attributes(
    spec: ShapesSpec,
    attrs: dict[str, list[str]],
    rate: float,
    seed: int,
    split: str,
    indices: np.ndarray,
    exclude: Sequence[Mapping[str, str]] = (),
) -> dict[str, list[str]]:
    """The attributes the captions of ``indices`` state: the true ones, except that with probability
    ``rate`` one appearance attribute of one object is replaced by another value, uniformly.

    A replacement never makes an object match an ``exclude`` (holdout) entry, so held-out
    combinations stay out of the training text as well as the images; where no value is left (a
    one-value vocabulary, or every other value held out) the caption stays true.
    """
    if rate == 0.0:
        return attrs
    u = uniforms(seed, split, indices, fields=3, stream="caption_noise")
    suffixes = ["_1", "_2"] if spec.two_objects else [""]
    slots = [(name, suffix) for suffix in suffixes for name in NOISY_ATTRIBUTES if name in spec.object_values]
    stated = {key: list(values) for key, values in attrs.items()}
    for i, (corrupt, which, replacement) in enumerate(u):
        if corrupt >= rate:
            continue
        name, suffix = slots[int(_pick(which, 0, len(slots)))]
        obj = {a: stated[a + suffix][i] for a in spec.object_values}
        candidates = [v for v in spec.object_values[name] if v != obj[name] and not _excluded({**obj, name: v}, exclude)]
        if candidates:
            stated[name + suffix][i] = candidates[int(_pick(replacement, 0, len(candidates)))]
    return stated


class ShapesDataset(CaptionedDataset):
    """``size`` images of one split; item k is rendered from (seed, split, k) alone."""

    def __init__(
        self,
        split: str,
        size: int,
        resolution: int = ShapesSettings.resolution,
        seed: int = 0,
        spec: ShapesSpec = ShapesSpec(),
        exclude: Sequence[Mapping[str, str]] = (),
        caption_noise: float = 0.0,
    ) -> None:
        if size < 0 or resolution < 1:
            raise ValueError(f"size={size} must be >= 0 and resolution={resolution} >= 1")
        self.split, self.size, self.resolution, self.seed, self.spec = check_split(split), size, resolution, seed, spec
        self.caption_noise = check_caption_noise(caption_noise)
        self.exclude = spec.check_holdout(exclude)
        self.schema = spec.schema()
        self._table = spec.object_table(self.exclude)

    def __len__(self) -> int:
        return self.size

    def render(self, indices: Sequence[int]) -> tuple[torch.Tensor, dict[str, list[str]]]:
        """uint8 images (N, 3, R, R) and the true attributes of items ``indices``, in one pass."""
        index = np.asarray(indices, dtype=np.int64).reshape(-1)
        if index.size and (index.min() < 0 or index.max() >= self.size):
            raise IndexError(
                f"indices must be in [0, {self.size}) for split {self.split!r}, got {index.min()}..{index.max()}"
            )
        scenes, attrs = sample_scenes(self.spec, self._table, self.seed, self.split, index)
        return torch.from_numpy(render(scenes, self.resolution)), attrs

    def __getitems__(self, indices: Sequence[int]) -> list[Sample]:
        images, attrs = self.render(indices)
        index = np.asarray(indices, dtype=np.int64).reshape(-1)
        stated = caption_attributes(self.spec, attrs, self.caption_noise, self.seed, self.split, index, self.exclude)
        samples = []
        for i, image in enumerate(images):  # per image: small tensors stay single-threaded
            item = {name: values[i] for name, values in attrs.items()}
            text = self.schema.caption({name: values[i] for name, values in stated.items()})
            samples.append({"image": to_model_range(image), "text": text, "attrs": item})
        return samples

    def __getitem__(self, index: int) -> Sample:
        return self.__getitems__([index])[0]

    def fingerprint(self) -> dict[str, Any]:
        return {
            "dataset": "shapes",
            "renderer_version": RENDERER_VERSION,
            "split": self.split,
            "size": self.size,
            "resolution": self.resolution,
            "seed": self.seed,
            "colors": list(self.spec.colors),
            "shapes": list(self.spec.shapes),
            "two_objects": self.spec.two_objects,
            "with_size": self.spec.with_size,
            "exclude": self.exclude,
            # Only when on, so the caches keyed by clean splits (judge, references) stay valid.
            **({"caption_noise": self.caption_noise} if self.caption_noise else {}),
        }


class ShapesDataModule(CaptionedImageDataModule):
    """Shapes splits of the given sizes; ``holdout`` lists combinations kept out of ``train``.

    ``colors`` / ``shapes`` pick from the renderer's palette and shapes (None: the defaults);
    ``holdout`` entries are {attribute: value} over color/shape/position/size, e.g.
    ``({"color": "red", "shape": "circle"},)`` (``DEFAULT_HOLDOUT`` is the versioned default).
    ``caption_noise`` is the probability that a ``train`` caption misnames one attribute (module
    docstring).
    """

    settings: ShapesSettings

    def native_size(self, split: str) -> float:
        """Rendered, not resized: any size."""
        return math.inf

    def __init__(self, settings: ShapesSettings = ShapesSettings()) -> None:
        super().__init__(settings)
        self.spec = ShapesSpec(
            DEFAULT_COLORS if settings.colors is None else settings.colors,
            DEFAULT_SHAPES if settings.shapes is None else settings.shapes,
            settings.two_objects,
            settings.with_size,
        )
        self.schema = self.spec.schema()
        self.holdout = self.spec.check_holdout(settings.holdout)
        self.spec.object_table(self.holdout)  # fail now if the holdout empties a position

    def build(self, split: str) -> ShapesDataset:
        size = getattr(self.settings, f"{check_split(split)}_size")
        if split != "train":  # held-out scenes and true captions everywhere but train
            return ShapesDataset(split, size, self.resolution, self.seed, self.spec)
        return ShapesDataset(
            split, size, self.resolution, self.seed, self.spec, self.holdout, self.settings.caption_noise
        )

    def heldout_prompts(self) -> list[dict[str, Any]]:
        """The held-out combinations as single-object prompt rows {"prompt", "attrs"}."""
        single = ShapesSpec(self.spec.colors, self.spec.shapes, with_size=self.spec.with_size).schema()
        return [{"prompt": single.caption(a), "attrs": a} for a in heldout_attrs(self.spec, self.holdout)]
