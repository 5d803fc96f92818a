"""Shapes data: determinism, attributes that match captions and pixels, holdout, geometry."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mjexp.data.dataset_settings import ShapesSettings
from mjexp.data.shapes import (
    DEFAULT_HOLDOUT,
    ShapesDataModule,
    ShapesDataset,
    ShapesSpec,
    heldout_attrs,
    uniforms,
)
from shapes_world.layout import CENTER_JITTER, POSITIONS, RADIUS_JITTER, SIZES
from shapes_world.render import MAX_EXTENT, PALETTE

QUADRANT = {"top left": (0, 0), "top right": (0, 1), "bottom left": (1, 0), "bottom right": (1, 1)}


def test_same_seed_gives_identical_bytes_and_items_do_not_depend_on_batching() -> None:
    a, _ = ShapesDataset("train", 100, seed=3).render(range(100))
    b, _ = ShapesDataset("train", 100, seed=3).render(range(100))
    assert a.numpy().tobytes() == b.numpy().tobytes()
    # item k alone, inside another batch, or from a split of another size: same pixels
    c, _ = ShapesDataset("train", 5000, seed=3).render([70, 5, 99])
    assert np.array_equal(c.numpy(), a.numpy()[[70, 5, 99]])
    d, _ = ShapesDataset("train", 100, seed=4).render(range(100))
    assert (a != d).flatten(1).any(1).float().mean() > 0.9


def test_splits_use_disjoint_streams_and_share_no_image() -> None:
    digests = {}
    for split in ("train", "judge", "val", "test"):
        images, _ = ShapesDataset(split, 500).render(range(500))
        digests[split] = {hashlib.sha256(image.numpy().tobytes()).hexdigest() for image in images}
        assert len(digests[split]) == 500, f"duplicate images inside {split}"
    assert len(set().union(*digests.values())) == 2000


def test_uniforms_are_a_pure_function_of_the_item_and_look_uniform() -> None:
    u = uniforms(0, "train", np.arange(20000))
    assert np.array_equal(u[[7, 3]], uniforms(0, "train", np.array([7, 3])))
    assert u.min() >= 0 and u.max() < 1
    assert np.allclose(u.mean(0), 0.5, atol=0.01) and np.allclose(u.var(0), 1 / 12, atol=0.003)
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.03


def _object_pixels(image: np.ndarray, position: str) -> np.ndarray:
    """Pixels (M, 3) of the quadrant clearly brighter than the background."""
    r = image.shape[-1] // 2
    row, col = QUADRANT[position]
    quadrant = image[:, row * r : (row + 1) * r, col * r : (col + 1) * r].reshape(3, -1).T.astype(float)
    return quadrant[quadrant.max(1) > 120]


@pytest.mark.parametrize("two_objects", [False, True])
def test_captions_and_pixels_match_the_attributes(two_objects: bool) -> None:
    spec = ShapesSpec(two_objects=two_objects)
    dataset = ShapesDataset("test", 64, resolution=32, spec=spec)
    samples = dataset.__getitems__(list(range(64)))
    images, _ = dataset.render(range(64))
    for sample, image in zip(samples, images.numpy()):
        attrs = sample["attrs"]
        assert sample["text"] == spec.schema().caption(attrs)
        slots = ["_1", "_2"] if two_objects else [""]
        occupied = {attrs[f"position{s}"] for s in slots}
        for s in slots:
            pixels = _object_pixels(image, attrs[f"position{s}"])
            assert len(pixels) > 0
            # the object's colour is a brightness-scaled version of its palette colour
            direction = np.array(PALETTE[attrs[f"color{s}"]], dtype=float)
            cosine = pixels @ direction / np.linalg.norm(pixels, axis=1) / np.linalg.norm(direction)
            assert np.median(cosine) > 0.99
            assert attrs[f"color{s}"] in sample["text"] and attrs[f"shape{s}"] in sample["text"]
        for empty in set(POSITIONS) - occupied:
            assert len(_object_pixels(image, empty)) == 0
    if two_objects:
        assert all(POSITIONS.index(s["attrs"]["position_1"]) < POSITIONS.index(s["attrs"]["position_2"]) for s in samples)


def test_objects_stay_inside_their_quadrant() -> None:
    # Worst case geometry: largest radius and extent with all jitter in one direction.
    assert max(SIZES.values()) * MAX_EXTENT * (1 + RADIUS_JITTER) + CENTER_JITTER < 0.25
    spec = ShapesSpec(shapes=("circle", "square", "triangle", "cross", "diamond"), with_size=True)
    images, attrs = ShapesDataset("train", 200, resolution=64, spec=spec).render(range(200))
    for image, position in zip(images.numpy(), attrs["position"]):
        row, col = QUADRANT[position]
        outside = image.astype(int).copy()
        outside[:, row * 32 : (row + 1) * 32, col * 32 : (col + 1) * 32] = outside[:, :1, :1]
        assert np.all(outside == outside[:, :1, :1]), "an object leaks out of its quadrant"


def test_shape_geometry_differs_per_shape_and_size() -> None:
    """Large objects cover more pixels than small ones; every shape has its own footprint."""
    spec = ShapesSpec(colors=("white",), shapes=("circle", "square", "triangle", "cross", "diamond"), with_size=True)
    images, attrs = ShapesDataset("train", 400, resolution=64, spec=spec).render(range(400))
    area = (images.numpy().astype(float).mean(1) > 100).reshape(400, -1).sum(1)
    size, shape = np.array(attrs["size"]), np.array(attrs["shape"])
    assert area[size == "small"].max() < area[size == "large"].min()
    large = {s: np.median(area[(shape == s) & (size == "large")]) for s in spec.shapes}
    assert len(set(large.values())) == len(spec.shapes)


def test_same_scene_at_any_resolution() -> None:
    small = ShapesDataset("val", 50, resolution=16).__getitems__(list(range(50)))
    large = ShapesDataset("val", 50, resolution=48).__getitems__(list(range(50)))
    assert [s["text"] for s in small] == [s["text"] for s in large]
    assert small[0]["image"].shape == (3, 16, 16) and large[0]["image"].shape == (3, 48, 48)


def test_all_combinations_appear_roughly_uniformly() -> None:
    _, attrs = ShapesDataset("train", 7200).render(range(7200))
    combos = list(zip(attrs["color"], attrs["shape"], attrs["position"]))
    counts = np.array([combos.count(c) for c in set(combos)])
    assert len(counts) == 72 and counts.min() > 60 and counts.max() < 145  # mean 100


def test_holdout_only_affects_train() -> None:
    module = ShapesDataModule(ShapesSettings(train_size=3000, test_size=3000, judge_size=3000, holdout=DEFAULT_HOLDOUT))
    held = {(h["color"], h["shape"]) for h in DEFAULT_HOLDOUT}
    for split, expect_held in (("train", False), ("judge", True), ("test", True)):
        _, attrs = module.dataset(split).render(range(3000))
        pairs = set(zip(attrs["color"], attrs["shape"]))
        assert bool(pairs & held) == expect_held, split
        assert len(pairs | held) == 18  # every other combination still appears
    assert {(p["attrs"]["color"], p["attrs"]["shape"]) for p in module.heldout_prompts()} == held
    assert len(module.heldout_prompts()) == len(held) * len(POSITIONS)


def test_holdout_applies_to_both_objects_of_two_object_scenes() -> None:
    holdout = [{"color": "red"}, {"shape": "square", "position": "top left"}]
    dataset = ShapesDataset("train", 2000, spec=ShapesSpec(two_objects=True), exclude=holdout)
    _, attrs = dataset.render(range(2000))
    for slot in ("_1", "_2"):
        assert "red" not in attrs[f"color{slot}"]
        assert ("square", "top left") not in set(zip(attrs[f"shape{slot}"], attrs[f"position{slot}"]))
    assert len(set(attrs["position_1"]) | set(attrs["position_2"])) == 4


def test_heldout_attrs_expand_partial_entries() -> None:
    rows = heldout_attrs(ShapesSpec(), [{"color": "blue", "position": "top left"}])
    assert [r["shape"] for r in rows] == ["circle", "square", "triangle"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"colors": ["red", "mauve"]}, "colors"),
        ({"shapes": ["circle", "circle"]}, "shapes"),
        ({"holdout": [{"colour": "red"}]}, "holdout entry"),
        ({"holdout": [{"shape": "hexagon"}]}, "holdout entry"),
        ({"holdout": [{}]}, "holdout entry"),
        ({"holdout": [{"position": "top left"}]}, "top left"),
        ({"caption_noise": 1.5}, "caption_noise"),
        ({"caption_noise": -0.1}, "caption_noise"),
    ],
)
def test_bad_options_are_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ShapesDataModule(ShapesSettings(**kwargs))


def test_out_of_range_index_is_an_error() -> None:
    with pytest.raises(IndexError, match=r"\[0, 10\)"):
        ShapesDataset("train", 10)[10]


def test_fingerprint_changes_with_what_changes_the_pixels() -> None:
    base = ShapesDataModule().fingerprint("test")
    assert base == ShapesDataModule().fingerprint("test")
    assert base["renderer_version"] >= 1
    for change in ({"seed": 1}, {"resolution": 32}, {"test_size": 5}):
        other = ShapesDataModule(ShapesSettings(**change))
        assert other.fingerprint("test") != base
    assert ShapesDataModule().fingerprint("judge") != base
