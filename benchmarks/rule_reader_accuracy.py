"""How often the exact rule reader (evaluation.rule_reader) reads rendered shapes scenes right, per
layout, resolution and attribute: the numbers docs/evaluation.md quotes for it.

    python -m benchmarks.rule_reader_accuracy [--images 1000] [--split test]

Prints a Markdown table: one row per layout (one object, sizes, every colour and outline, two
objects) and resolution (16, 32 px), each attribute's share of scenes read as prompted.
"""

from __future__ import annotations

import argparse
from typing import Sequence

import torch

from evaluation.rule_reader import read_images
from mjexp.data.shapes import ShapesDataset, ShapesSpec
from shapes_world.render import PALETTE, SHAPE_NAMES

LAYOUTS = {
    "default": ShapesSpec(),
    "default + sizes": ShapesSpec(with_size=True),
    "every colour and outline": ShapesSpec(colors=tuple(PALETTE), shapes=SHAPE_NAMES),
    "every colour and outline + sizes": ShapesSpec(colors=tuple(PALETTE), shapes=SHAPE_NAMES, with_size=True),
    "every colour and outline, two objects": ShapesSpec(colors=tuple(PALETTE), shapes=SHAPE_NAMES, two_objects=True),
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rule_reader_accuracy", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--split", default="test")
    args = parser.parse_args(argv)
    print("| layout | px | position | colour | shape | size |\n|---|---|---|---|---|---|")
    for name, spec in LAYOUTS.items():
        for resolution in (16, 32):
            items = ShapesDataset(args.split, args.images, resolution=resolution, spec=spec).__getitems__(
                list(range(args.images)))
            images = torch.stack([((item["image"] + 1) * 127.5).round().to(torch.uint8) for item in items])
            right = read_images(images, [item["attrs"] for item in items], dict(spec.object_values))
            cells = [f"{right[a].mean():.3f}" if a in right else "" for a in ("position", "color", "shape", "size")]
            print(f"| {name} | {resolution} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
