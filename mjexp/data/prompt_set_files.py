"""Versioned evaluation prompt sets, written to ``evaluation/prompts/`` by
``python -m mjexp.data.prompt_set_files [--out DIR]``.

Each set is ``<name>_v<version>.jsonl`` (one ``{"prompt", "attrs"}`` per line) plus
``<name>_v<version>.meta.json`` (version, dataset, caption template, attribute vocabulary,
description, row count and the jsonl's sha256) so a report can name exactly what it scored.
The files are generated deterministically and committed; change a set only under a new version.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mjexp.data.captions import CaptionSchema
from mjexp.data.digits import DIGITS_SCHEMA
from mjexp.data.shapes import DEFAULT_HOLDOUT, ShapesSpec, heldout_attrs
from shapes_world.layout import POSITIONS

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "evaluation" / "prompts"


@dataclass(frozen=True)
class PromptSetSpec:
    name: str
    version: int
    dataset: str
    description: str
    schema: CaptionSchema
    attrs: list[dict[str, str]]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        return f"{self.name}_v{self.version}"

    def jsonl(self) -> str:
        rows = ({"prompt": self.schema.caption(a), "attrs": a} for a in self.attrs)
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)

    def meta(self) -> str:
        meta = {
            "name": self.stem,
            "version": self.version,
            "dataset": self.dataset,
            "description": self.description,
            "caption_template": self.schema.template,
            "attribute_values": self.schema.attribute_values(),
            "num_prompts": len(self.attrs),
            "jsonl_sha256": hashlib.sha256(self.jsonl().encode()).hexdigest(),
            **self.extra,
        }
        return json.dumps(meta, indent=2, ensure_ascii=False) + "\n"


def two_object_attrs(spec: ShapesSpec) -> list[dict[str, str]]:
    """A balanced design: per quadrant pair, every (colour, shape) of object 1 once, object 2 shifted.

    Object 2's colour is shifted by a non-zero, pair-dependent offset (the two colours always
    differ, so the judge can tell which object is which) and its shape by a pair-dependent offset,
    so each slot sees every colour and every shape equally often.
    """
    colors, shapes = spec.colors, spec.shapes
    rows = []
    for p, (a, b) in enumerate(itertools.combinations(range(len(POSITIONS)), 2)):
        color_shift, shape_shift = 1 + p % (len(colors) - 1), p % len(shapes)
        for c, s in itertools.product(range(len(colors)), range(len(shapes))):
            rows.append({
                "color_1": colors[c], "shape_1": shapes[s], "position_1": POSITIONS[a],
                "color_2": colors[(c + color_shift) % len(colors)],
                "shape_2": shapes[(s + shape_shift) % len(shapes)],
                "position_2": POSITIONS[b],
            })  # fmt: skip
    return rows


def prompt_sets() -> list[PromptSetSpec]:
    """Every versioned prompt set."""
    single, two = ShapesSpec(), ShapesSpec(two_objects=True)
    return [
        PromptSetSpec(
            "shapes_single", 1, "shapes",
            "Every single-object combination of the default colours, shapes and positions, once each.",
            single.schema(), list(single.schema().combinations()),
        ),
        PromptSetSpec(
            "shapes_two_object", 1, "shapes",
            "Two objects of different colours in distinct quadrants (caption in quadrant order); "
            "balanced over quadrant pairs, colours and shapes per object slot.",
            two.schema(), two_object_attrs(two),
        ),
        PromptSetSpec(
            "shapes_heldout", 1, "shapes",
            "Single-object prompts whose (colour, shape) is in the default holdout, so never in train "
            "when the holdout is enabled: compositional generalisation.",
            single.schema(), heldout_attrs(single, DEFAULT_HOLDOUT), {"holdout": list(DEFAULT_HOLDOUT)},
        ),
        PromptSetSpec(
            "digits", 1, "digits", "One prompt per handwritten digit class.",
            DIGITS_SCHEMA, list(DIGITS_SCHEMA.combinations()),
        ),
    ]  # fmt: skip


def write(out: Path) -> list[Path]:
    """Write every set into ``out``; returns the written paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for prompt_set in prompt_sets():
        for suffix, text in ((".jsonl", prompt_set.jsonl()), (".meta.json", prompt_set.meta())):
            path = out / f"{prompt_set.stem}{suffix}"
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the versioned evaluation prompt sets.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    for path in write(parser.parse_args(argv).out):
        print(path)


if __name__ == "__main__":
    main()
