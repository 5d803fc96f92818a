"""How alike are the evaluation judge and the domain CLIPs that condition the models it scores?

    python -m benchmarks.judge_similarity [--judges DIR ...] [--encoders DIR ...] [--prompt-set NAME]

A judge and an encoder of one seed and architecture start from the same weights (docs/evaluation.md,
"Judge independence"). For every encoder folder (default: the domain-CLIP cache) and judge folder
(default: the judge cache) of one architecture this prints the cosine similarity of the flattened
weights (how much of the shared start survives training) and the linear CKA of their text
embeddings of a prompt set (how alike they read the prompts), as a Markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

CACHE = Path(".cache/mjexp")


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) of two (n, d) feature matrices of the same n inputs:
    1 for features equal up to rotation and scale, near 0 for unrelated ones."""
    x, y = (m.double() - m.double().mean(0) for m in (x, y))
    return float((x.T @ y).norm() ** 2 / ((x.T @ x).norm() * (y.T @ y).norm()))


def weight_cosine(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> float:
    """Cosine similarity of two state dicts flattened over the tensors they share by name and shape."""
    names = [k for k in first if k in second and first[k].shape == second[k].shape]
    if not names:
        raise ValueError("the two models share no tensor of one name and shape")
    a, b = (torch.cat([state[k].double().flatten() for k in names]) for state in (first, second))
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judges", nargs="+", type=Path, help="judge folders (default: the judge cache)")
    parser.add_argument("--encoders", nargs="+", type=Path, help="domain-CLIP folders (default: its cache)")
    parser.add_argument("--prompt-set", default="shapes_two_object_v1", help="prompts whose embeddings are compared")
    args = parser.parse_args(argv)

    from safetensors.torch import load_file

    from evaluation import load_prompt_set
    from evaluation.judge import load_judge
    from mjexp.text.clip_train import WEIGHTS_FILE, read_metrics

    judges = args.judges or sorted((CACHE / "judge").glob("judge-seed*"))
    encoders = args.encoders or sorted((CACHE / "domain_clip").glob("train-seed*"))
    if not judges or not encoders:
        raise SystemExit("no judge or no encoder folder: train a model first or pass --judges/--encoders")
    prompts = load_prompt_set(args.prompt_set).prompts

    def describe(folder: Path) -> tuple[dict, torch.Tensor, dict[str, torch.Tensor]]:
        return read_metrics(folder), load_judge(folder).encode_texts(prompts), load_file(str(folder / WEIGHTS_FILE))

    judged = {folder: describe(folder) for folder in judges}
    architecture = next(iter(judged.values()))[0]["key"]["model_cfg"]
    print(f"{len(prompts)} prompts of {args.prompt_set}; weight cosine / text CKA of each encoder with each judge")
    print("| encoder | seed | steps | val retrieval | " + " | ".join(f"{j.name}" for j in judged) + " |")
    print("|---|---|---|---|" + "---|" * len(judged))
    for folder in encoders:
        record, texts, weights = describe(folder)
        if record["key"]["model_cfg"] != architecture:
            continue
        cells = [
            f"{weight_cosine(weights, judge_weights):.3f} / {linear_cka(texts, judge_texts):.3f}"
            for _, judge_texts, judge_weights in judged.values()
        ]
        key = record["key"]
        print(f"| {folder.name} | {key['seed']} | {key['config']['steps']} | {record['val_retrieval_top1']:.3f} | "
              + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
