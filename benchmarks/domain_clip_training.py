"""Domain-CLIP training with and without the token cache, side by side in one process.

    python -m benchmarks.domain_clip_training [--steps 100] [--repeats 3]

Trains the default recipe (the conditioning encoder's; the judge's differs only in length and
jitter) on the demo's data (two-object shapes, a quarter of the captions noisy) for ``--steps``
steps per repetition, the two sides interleaved; prints seconds per step of each and checks that
both end with identical weights: the cache (mjexp.text.tokens.TokenCache) changes only the time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from typing import Sequence
from unittest import mock

import torch

from mjexp.data.dataset_settings import ShapesSettings
from mjexp.data.shapes import ShapesDataModule
from mjexp.text import clip_train
from mjexp.text.clip_module import DomainClipConfig, TextEncoderModule
from mjexp.text.tokens import tokenize_checked


class TokenisingEveryStep(TextEncoderModule):
    """The module as it was before the cache: every batch's captions through the tokenizer."""

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        ids = tokenize_checked(self._token_ids.tokenizer, texts, self.config.context_length, 0, "domain CLIP")
        return ids.to(self.device)


def fit_seconds(module_class: type, config: DomainClipConfig, data: ShapesDataModule) -> tuple[float, dict]:
    """Seconds of one training of ``config.steps`` steps, and the trained weights."""
    loader = clip_train._loader(data, "train", config.batch_size, seed=0, train=True)
    model_cfg = config.model_cfg(data.settings.resolution)
    with mock.patch.object(clip_train, "TextEncoderModule", module_class):
        start = time.perf_counter()
        module = clip_train._fit(model_cfg, config, loader, seed=0)
        seconds = time.perf_counter() - start
    return seconds, module.clip.state_dict()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.domain_clip_training", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    config = replace(DomainClipConfig(), steps=args.steps)
    data = ShapesDataModule(ShapesSettings(two_objects=True, caption_noise=0.25))
    sides = {"tokenised every step": TokenisingEveryStep, "token cache": TextEncoderModule}
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    weights: dict[str, dict] = {}
    for round_index in range(args.repeats):  # interleaved: A B, B A, ...
        for name in list(sides) if round_index % 2 == 0 else reversed(list(sides)):
            took, weights[name] = fit_seconds(sides[name], config, data)
            seconds[name].append(took)
    same = all(torch.equal(a, b) for a, b in zip(*(w.values() for w in weights.values())))
    print(f"domain CLIP, {args.steps} steps of batch {config.batch_size}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} (range):")
    for name, times in seconds.items():
        per_step = [t / args.steps for t in times]
        print(f"  {name}: {statistics.median(per_step) * 1000:.1f} ms/step ({min(per_step) * 1000:.1f}-{max(per_step) * 1000:.1f})")
    print(f"  identical weights: {same}")
    if not same:
        raise SystemExit("the two sides trained different weights")


if __name__ == "__main__":
    main()
