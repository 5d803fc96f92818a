"""An exact reader of the built-in shapes world: what a generated image shows, read from its pixels
with the renderer's own palette, quadrants, sizes and shape outlines (:mod:`shapes_world`).

A learned judge is validated on real images and then trusted on generated ones; this reader needs
no training, so it is the independent reading that the judge's verdicts on generated images are
checked against (``judge_agreement/<attribute>``). For each object a prompt names:

* foreground: pixels whose largest channel difference from the background (the image's median
  colour) exceeds :data:`FOREGROUND_CONTRAST` grey levels;
* position: the named quadrant holds foreground and is among the K quadrants with the most of it
  (K = the number of objects the prompt names);
* colour: the mean of the named quadrant's core pixels (at least :data:`CORE_FRACTION` of its
  strongest contrast), named by the nearest palette colour of the prompt set's vocabulary, each
  scaled by its best brightness within the renderer's range;
* shape and size: the quadrant's coverage (each pixel's share of the object colour) compared with
  each candidate shape drawn by the renderer's own signed distance function at the radius and
  centre its area and centroid imply (refined over sub-pixel shifts and radius scales); the
  closest outline names the shape, and its radius the size.

An attribute of an image is right when it is right for every object the prompt names (as the
judge's attribute accuracy counts it). Validated on rendered scenes of every split
(``tests/unit/evaluation/test_rule_reader.py``; docs/evaluation.md, two readings).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np
import torch

from shapes_world.layout import BRIGHTNESS, DEFAULT_RADIUS, POSITION_CENTERS, POSITIONS, SIZES
from shapes_world.render import PALETTE, SHAPE_SDFS

FOREGROUND_CONTRAST = 40.0  # grey levels: below every palette colour's contrast with the background
CORE_FRACTION = 0.6  # of a quadrant's strongest contrast: pixels the object fully covers
SHIFTS = (-0.3, 0.0, 0.3)  # pixels, per axis: sub-pixel refinement of the centroid estimate
RADIUS_SCALES = (0.94, 1.0, 1.06)
# Measured on 1000 rendered test scenes per layout (python -m benchmarks.rule_reader_accuracy):
# every attribute 1.000 at 16 and 32 px, except shape among all five outlines for small objects
# (radius 0.11 of the side, 1.8 px at 16 px): 0.973, as a cross, a diamond and a circle 3.5 px
# wide differ in a pixel or two. Five outlines need a radius of at least this many pixels.
FIVE_OUTLINE_RADIUS_PX = 2.5
BASIC_SHAPES = ("circle", "square", "triangle")


def illegible(vocabulary: Mapping[str, Sequence[str]], resolution: int) -> dict[str, str]:
    """Attributes the reader cannot read at ``resolution`` with this vocabulary, and why: they
    are reported but kept out of the mean."""
    radius = (min(SIZES.values()) if "size" in vocabulary else DEFAULT_RADIUS) * resolution
    if set(vocabulary.get("shape", ())) - set(BASIC_SHAPES) and radius < FIVE_OUTLINE_RADIUS_PX:
        return {"shape": f"objects of {radius:.1f} px radius are too small to tell {len(vocabulary['shape'])} "
                         f"outlines apart (read right in 0.973 of rendered scenes at 1.8 px; needs "
                         f">= {FIVE_OUTLINE_RADIUS_PX} px)"}
    return {}


@lru_cache(maxsize=None)
def outline_moments(shape: str, resolution: int = 512) -> tuple[float, float, float]:
    """Area (in squared object units) and centroid offset (x, y) of a shape's outline, from its
    signed distance function on a fine grid: a radius-r object covers area * r^2."""
    grid = (np.arange(resolution) + 0.5) / resolution * 2.4 - 1.2
    v, u = np.meshgrid(grid, grid, indexing="ij")
    inside = SHAPE_SDFS[shape](u, v) < 0
    cell = (2.4 / resolution) ** 2
    area = inside.sum() * cell
    return float(area), float(u[inside].mean()), float(v[inside].mean())


def coverage(shape: str, center: np.ndarray, radius: np.ndarray, resolution: int) -> np.ndarray:
    """(M, R, R) pixel coverage of M objects, as the renderer anti-aliases them."""
    grid = (np.arange(resolution, dtype=np.float64) + 0.5) / resolution
    u = (grid[None, None, :] - center[:, 0, None, None]) / radius[:, None, None]
    v = (grid[None, :, None] - center[:, 1, None, None]) / radius[:, None, None]
    distance = SHAPE_SDFS[shape](u, v) * (radius[:, None, None] * resolution)
    return np.clip(0.5 - distance, 0.0, 1.0)


def object_slots(attrs: Mapping[str, str]) -> list[str]:
    """The suffixes of the objects a prompt names: ``[""]`` or ``["_1", "_2"]``."""
    return sorted({key[len("position"):] for key in attrs if key.startswith("position")})


def read_images(
    pixels: torch.Tensor, attrs: Sequence[Mapping[str, str]], vocabulary: Mapping[str, Sequence[str]]
) -> dict[str, np.ndarray]:
    """Per attribute the prompts name (colour, shape, position, size): a bool vector over images,
    right when every named object shows it. ``vocabulary``: each attribute's candidate values
    (the prompt set's; keys without a suffix)."""
    if pixels.dtype != torch.uint8 or pixels.ndim != 4 or pixels.shape[1] != 3 or pixels.shape[-1] != pixels.shape[-2]:
        raise ValueError(f"the rule reader needs square uint8 RGB images (N, 3, R, R), got {tuple(pixels.shape)}")
    if len(attrs) != len(pixels):
        raise ValueError(f"{len(pixels)} images but {len(attrs)} attribute rows")
    images = pixels.double().numpy()
    n, resolution = len(images), images.shape[-1]
    background = np.median(images.reshape(n, 3, -1), axis=2)  # (N, 3)
    contrast = np.abs(images - background[:, :, None, None]).max(axis=1)  # (N, R, R)
    foreground = contrast > FOREGROUND_CONTRAST
    centres = (np.arange(resolution) + 0.5) / resolution
    quadrants = np.stack([  # (4, R, R) in POSITIONS order: rows are y
        ((centres[:, None] < 0.5) == (y < 0.5)) & ((centres[None, :] < 0.5) == (x < 0.5))
        for x, y in POSITION_CENTERS
    ])
    mass = (foreground[:, None] & quadrants[None]).sum(axis=(2, 3))  # (N, 4)

    rows = [(i, slot) for i, row in enumerate(attrs) for slot in object_slots(row)]
    counts = np.array([len(object_slots(row)) for row in attrs])
    image = np.array([i for i, _ in rows])
    named = np.array([POSITIONS.index(attrs[i]["position" + slot]) for i, slot in rows])
    region = quadrants[named] & foreground[image]  # (M, R, R)
    filled = region.any(axis=(1, 2))
    ranks = (-mass).argsort(axis=1, kind="stable").argsort(axis=1)  # rank of each quadrant by mass
    right: dict[str, np.ndarray] = {"position": filled & (ranks[image, named] < counts[image])}

    strongest = np.where(region, contrast[image], 0.0).max(axis=(1, 2))
    core = region & (contrast[image] >= CORE_FRACTION * strongest[:, None, None])
    weights = core[:, None].astype(np.float64)
    colour = (images[image] * weights).sum(axis=(2, 3)) / np.maximum(weights.sum(axis=(2, 3)), 1.0)  # (M, 3)
    if "color" in vocabulary:
        right["color"] = filled & (np.array(_nearest_colour(colour, background[image], vocabulary["color"]))
                                   == np.array([attrs[i]["color" + slot] for i, slot in rows]))
    if "shape" in vocabulary or "size" in vocabulary:
        shape, radius = _fit_outline(images[image], background[image], colour, quadrants[named], filled,
                                     vocabulary.get("shape", tuple(SHAPE_SDFS)))
        if "shape" in vocabulary:
            right["shape"] = filled & (shape == np.array([attrs[i]["shape" + slot] for i, slot in rows]))
        if "size" in vocabulary:
            sizes = np.array(list(SIZES))
            nearest = sizes[np.abs(np.log(radius[:, None]) - np.log(np.array(list(SIZES.values()))[None])).argmin(axis=1)]
            right["size"] = filled & (nearest == np.array([attrs[i].get("size" + slot) for i, slot in rows]))
    per_image = {}
    for name, flags in right.items():
        if any(name + slot in attrs[i] for i, slot in rows):
            per_image[name] = np.logical_and.reduceat(flags, np.r_[0, np.cumsum(counts)[:-1]]) if rows else flags
    return per_image


def _nearest_colour(colour: np.ndarray, background: np.ndarray, names: Sequence[str]) -> list[str]:
    """The palette name nearest each (M, 3) observed colour: each candidate at each brightness of
    the renderer's range, blended with the background by the coverage that fits best (small
    objects cover no pixel fully)."""
    palette = np.array([PALETTE[name] for name in names], dtype=np.float64)  # (C, 3)
    brightness = np.linspace(BRIGHTNESS[0], BRIGHTNESS[1], 5)
    target = (colour - background)[:, None, None, :]  # (M, 1, 1, 3)
    direction = brightness[None, None, :, None] * palette[None, :, None, :] - background[:, None, None, :]  # (M, C, B, 3)
    share = np.clip((target * direction).sum(-1) / (direction**2).sum(-1), 0.0, 1.0)
    distance = np.linalg.norm(target - share[..., None] * direction, axis=-1).min(axis=2)  # (M, C)
    return [names[k] for k in distance.argmin(axis=1)]


def _fit_outline(
    images: np.ndarray, background: np.ndarray, colour: np.ndarray, quadrant: np.ndarray, filled: np.ndarray,
    shapes: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """For M objects: the candidate shape whose rendered outline best matches the observed
    coverage in its quadrant, and that fit's radius (fraction of the image side)."""
    m, resolution = len(images), images.shape[-1]
    direction = colour - background
    norm = np.maximum((direction**2).sum(axis=1), 1e-6)
    observed = ((images - background[:, :, None, None]) * direction[:, :, None, None]).sum(axis=1) / norm[:, None, None]
    observed = np.clip(observed, 0.0, 1.0) * quadrant  # (M, R, R)
    area = np.maximum(observed.sum(axis=(1, 2)), 1e-6) / resolution**2  # fraction of the image
    centres = (np.arange(resolution) + 0.5) / resolution
    centroid = np.stack([(observed.sum(axis=1) * centres).sum(axis=1), (observed.sum(axis=2) * centres).sum(axis=1)],
                        axis=1) / (area[:, None] * resolution**2)
    best_error = np.full(m, np.inf)
    best_shape = np.array([shapes[0]] * m, dtype=object)
    best_radius = np.sqrt(area / np.pi)
    for shape in shapes:
        unit_area, offset_x, offset_y = outline_moments(shape)
        radius0 = np.sqrt(area / unit_area)
        for scale in RADIUS_SCALES:
            radius = radius0 * scale
            for dx in SHIFTS:
                for dy in SHIFTS:
                    centre = centroid - np.stack([offset_x * radius, offset_y * radius], axis=1)
                    centre = centre + np.array([dx, dy]) / resolution
                    error = np.abs(coverage(shape, centre, radius, resolution) * quadrant - observed).sum(axis=(1, 2))
                    better = error < best_error
                    best_error[better], best_shape[better], best_radius[better] = error[better], shape, radius[better]
    best_shape[~filled] = ""
    return best_shape.astype(str), best_radius
