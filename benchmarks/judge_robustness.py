"""Does the judge still read real images right when they look like strongly guided samples?

    python -m benchmarks.judge_robustness [--judges DIR ...] [--images N] [--generated DIR ...]
                                           [--override KEY=VALUE ...]

Strong guidance saturates colours and sharpens contrast. The judge is trained on clean renders
only, so a drop in attribute accuracy at high guidance may be the judge misreading such images
rather than the model drawing the wrong thing. This scores each judge zero-shot (as evaluation
does) on real ``test`` images, unchanged and perturbed, where the true attributes are known:
saturation and contrast raised (PIL ``ImageEnhance``) and a slight Gaussian blur. Data and
prompt template are those of ``python -m mjexp.train`` with the overrides (default: the default
experiment). Prints a Markdown table of per-attribute accuracy; with ``--generated`` (folders of
PNGs, e.g. an evaluation's ``generated/<setting>/images``) also how saturated and contrasted
those samples are next to the real images, and which share of them is noise rather than a scene
(:func:`evaluation.roughness.noise_share`, as ``mjexp.eval`` reports it: an eps model's
deterministic samples, docs/results/2026-11-25-default-variants.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

from benchmarks.encoder_seeds import compose_train_config

CACHE = Path(".cache/mjexp/judge")

PERTURBATIONS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "unchanged": lambda image: image,
    "saturation x1.25": lambda image: ImageEnhance.Color(image).enhance(1.25),
    "saturation x1.5": lambda image: ImageEnhance.Color(image).enhance(1.5),
    "saturation x2": lambda image: ImageEnhance.Color(image).enhance(2.0),
    "contrast x1.25": lambda image: ImageEnhance.Contrast(image).enhance(1.25),
    "contrast x1.5": lambda image: ImageEnhance.Contrast(image).enhance(1.5),
    "blur sigma 0.6 px": lambda image: image.filter(ImageFilter.GaussianBlur(0.6)),
}


def perturb(images: torch.Tensor, perturbation: Callable[[Image.Image], Image.Image]) -> torch.Tensor:
    """``perturbation`` applied to each image of a uint8 (N, 3, H, W) batch."""
    arrays = [np.array(perturbation(Image.fromarray(image.permute(1, 2, 0).numpy()))) for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def colour_statistics(images: torch.Tensor) -> dict[str, float]:
    """Of uint8 (N, 3, H, W) images: the share of bright pixels (max channel > 100, the shapes),
    their mean chroma (max - min channel, 0-255) and the mean chroma and value of the others."""
    rgb = images.permute(0, 2, 3, 1).double()
    value, chroma = rgb.amax(dim=-1), rgb.amax(dim=-1) - rgb.amin(dim=-1)
    bright = value > 100
    return {
        "bright share": float(bright.double().mean()),
        "bright chroma": float(chroma[bright].mean()),
        "dark chroma": float(chroma[~bright].mean()),
        "dark value": float(value[~bright].mean()),
    }


def load_pngs(folder: Path) -> torch.Tensor:
    files = sorted(folder.glob("*.png"))
    if not files:
        raise SystemExit(f"no PNG images in {folder}")
    return torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judges", nargs="+", type=Path, help="judge folders (default: the judge cache)")
    parser.add_argument("--images", type=int, default=1000, help="real test images scored")
    parser.add_argument("--prompt-set", default="shapes_two_object_v1", help="a set with the data's caption template")
    parser.add_argument("--generated", nargs="+", type=Path, default=[], help="folders of generated PNGs to describe")
    parser.add_argument("--override", action="append", default=None,
                        help="train config override (repeatable; default: +experiment=cfg_sweep)")
    args = parser.parse_args(argv)

    from evaluation import load_prompt_set
    from evaluation.attributes import attribute_accuracy
    from evaluation.quantisation import to_uint8
    from evaluation.judge import load_judge
    from evaluation.roughness import noise_share, roughness
    from mjexp.runs.components import build_datamodule
    from mjexp.runs.log_noise import quiet_third_party_logs

    quiet_third_party_logs()
    judges = args.judges or sorted(CACHE.glob("judge-seed*"))
    if not judges:
        raise SystemExit(f"no judge folder in {CACHE}: run an evaluation first or pass --judges")
    overrides = args.override if args.override is not None else ["+experiment=cfg_sweep"]
    datamodule = build_datamodule(compose_train_config(overrides).data)
    chunks, rows = [], []
    for batch in datamodule.dataloader("test"):
        chunks.append(to_uint8(batch["image"], "test images")[0])
        attrs = dict(batch["attrs"])
        rows += [{name: values[i] for name, values in attrs.items()} for i in range(len(chunks[-1]))]
        if len(rows) >= args.images:
            break
    images, rows = torch.cat(chunks)[: args.images], rows[: args.images]
    template = load_prompt_set(args.prompt_set).template
    unique = len({folder.name for folder in judges}) == len(judges)
    models = {folder.name if unique else str(folder): load_judge(folder) for folder in judges}
    attributes = list(template.groups())
    print(f"overrides: {' '.join(overrides)}; zero-shot accuracy on {len(rows)} real test images "
          f"({' / '.join(attributes)})")
    print("| images | " + " | ".join(models) + " |")
    print("|---|" + "---|" * len(models))
    for name, perturbation in PERTURBATIONS.items():
        batch = perturb(images, perturbation)
        cells = []
        for judge in models.values():
            accuracy = attribute_accuracy(judge.encode_images(batch), rows, template, judge.encode_texts)
            per = accuracy.per_attribute()
            cells.append(" / ".join(f"{per[a]:.3f}" for a in attributes))
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    if args.generated:
        sets = {"real test images": images, **{str(folder): load_pngs(folder) for folder in args.generated}}
        real_roughness = roughness(images)
        stats = {name: {**colour_statistics(batch), "noise share": noise_share(batch, real_roughness, tuple(images.shape[-2:])).value}
                 for name, batch in sets.items()}
        columns = list(next(iter(stats.values())))
        print("\n| images | n | " + " | ".join(columns) + " |")
        print("|---|---|" + "---|" * len(columns))
        for name, values in stats.items():
            print(f"| {name} | {len(sets[name])} | " + " | ".join("n/a" if values[c] is None else f"{values[c]:.3g}" for c in columns) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
