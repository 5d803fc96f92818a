"""The committed prompt sets are exactly what the generator writes, balanced and self-consistent."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from evaluation.prompt_sets import load_prompt_set
from mjexp.data.prompt_set_files import DEFAULT_OUT, prompt_sets, write
from mjexp.data.shapes import DEFAULT_HOLDOUT, ShapesSpec
from shapes_world.layout import POSITIONS

STEMS = [s.stem for s in prompt_sets()]


def test_committed_files_equal_the_generator_output(tmp_path: Path) -> None:
    written = write(tmp_path)
    assert len(written) == 2 * len(STEMS)
    for path in written:
        committed = DEFAULT_OUT / path.name
        assert committed.is_file(), f"{committed} is missing; run python -m mjexp.data.prompt_set_files"
        assert committed.read_bytes() == path.read_bytes(), f"{committed} is stale; run python -m mjexp.data.prompt_set_files"


@pytest.mark.parametrize("stem", STEMS)
def test_every_row_is_its_template_applied_to_its_attrs(stem: str) -> None:
    meta = json.loads((DEFAULT_OUT / f"{stem}.meta.json").read_text())
    rows = [json.loads(line) for line in (DEFAULT_OUT / f"{stem}.jsonl").read_text().splitlines()]
    assert meta["version"] == 1 and meta["num_prompts"] == len(rows) > 0 and meta["description"]
    assert len({r["prompt"] for r in rows}) == len(rows)
    for row in rows:
        assert row["prompt"] == meta["caption_template"].format(**row["attrs"])
        assert all(row["attrs"][k] in meta["attribute_values"][k] for k in meta["attribute_values"])
    loaded = load_prompt_set(stem)  # the evaluation side reads the same files
    assert loaded.version == "1" and list(loaded.prompts) == [r["prompt"] for r in rows]


def test_single_object_set_covers_every_combination_once() -> None:
    rows = [json.loads(line) for line in (DEFAULT_OUT / "shapes_single_v1.jsonl").read_text().splitlines()]
    assert sorted(json.dumps(r["attrs"], sort_keys=True) for r in rows) == sorted(
        json.dumps(a, sort_keys=True) for a in ShapesSpec().schema().combinations()
    )


def test_two_object_set_is_balanced_per_slot() -> None:
    rows = [json.loads(line)["attrs"] for line in (DEFAULT_OUT / "shapes_two_object_v1.jsonl").read_text().splitlines()]
    for key in ("color_1", "color_2", "shape_1", "shape_2"):
        assert len(set(Counter(r[key] for r in rows).values())) == 1, key
    assert len(set(Counter((r["position_1"], r["position_2"]) for r in rows).values())) == 1
    assert all(r["color_1"] != r["color_2"] for r in rows)
    assert all(POSITIONS.index(r["position_1"]) < POSITIONS.index(r["position_2"]) for r in rows)
    assert len(Counter((r["position_1"], r["position_2"]) for r in rows)) == 6


def test_heldout_set_is_the_default_holdout_at_every_position() -> None:
    meta = json.loads((DEFAULT_OUT / "shapes_heldout_v1.meta.json").read_text())
    rows = [json.loads(line)["attrs"] for line in (DEFAULT_OUT / "shapes_heldout_v1.jsonl").read_text().splitlines()]
    assert meta["holdout"] == list(DEFAULT_HOLDOUT)
    assert Counter((r["color"], r["shape"]) for r in rows) == {(h["color"], h["shape"]): 4 for h in DEFAULT_HOLDOUT}
