"""The scale of patch FID on real images: what "as sharp as a native render" and "an upscaled
small image" score, to read a hires fix's ``patch_fid`` against.

    python -m benchmarks.patch_fid_scale [--size 32] [--scale 2] [--images 256] [--two-objects]

The reference is the built-in shapes' ``test`` split rendered at ``--size``; the candidates are
``--images`` scenes of the ``val`` split, rendered at ``--size`` (a second sample of the same
distribution: the metric's floor at that image count) and rendered at ``--size / --scale`` then
upsampled by each upscaler the hires fix offers (what its second pass starts from). Prints a
Markdown table of patch FID with its 95% bootstrap interval.
"""

from __future__ import annotations

import argparse
from typing import Sequence

import torch

from evaluation.patch_fid import PatchAccumulator, patch_fid, patch_moments
from evaluation.quantisation import to_uint8
from mjexp.data.dataset_settings import ShapesSettings
from mjexp.data.shapes import ShapesDataModule
from mjexp.sampling.hires import upscale


def rendered(split: str, size: int, n: int | None, two_objects: bool) -> torch.Tensor:
    dataset = ShapesDataModule(ShapesSettings(resolution=size, two_objects=two_objects)).dataset(split)
    count = len(dataset) if n is None else min(n, len(dataset))
    return to_uint8(torch.stack([dataset[i]["image"] for i in range(count)]), split)[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=32, help="image size compared at")
    parser.add_argument("--scale", type=float, default=2.0, help="the hires fix's upscale factor")
    parser.add_argument("--images", type=int, default=256, help="val scenes per candidate (the val split has 256)")
    parser.add_argument("--two-objects", action="store_true", help="the default experiment's two-object scenes")
    parser.add_argument("--bootstrap", type=int, default=200)
    args = parser.parse_args(argv)
    small_size = round(args.size / args.scale)
    if not 4 <= small_size < args.size:
        parser.error(f"--size {args.size} / --scale {args.scale} must give a smaller image of at least 4 px")
    reference_images = rendered("test", args.size, None, args.two_objects)
    accumulator = PatchAccumulator(len(reference_images))
    accumulator.add(reference_images)
    reference = accumulator.moments()
    small = rendered("val", small_size, args.images, args.two_objects).float() / 127.5 - 1
    candidates = {f"native {args.size} px render": rendered("val", args.size, args.images, args.two_objects)}
    for mode in ("nearest", "bilinear", "bicubic"):
        candidates[f"{small_size} px render, {mode} upscale"] = to_uint8(upscale(small, (args.size, args.size), mode), mode)[0]
    print(f"patch FID against {len(reference_images)} test scenes rendered at {args.size} px; "
          f"{len(small)} val scenes per row{' (two objects)' if args.two_objects else ''}")
    print("| images | patch FID | 95% interval |")
    print("|---|---|---|")
    for label, images in candidates.items():
        result = patch_fid(patch_moments(images), reference, bootstrap=args.bootstrap)
        print(f"| {label} | {result.value:.5f} | {result.interval.low:.5f}-{result.interval.high:.5f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
