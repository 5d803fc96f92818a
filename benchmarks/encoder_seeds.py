"""How much the domain CLIP depends on its seed: val retrieval across seeds and training lengths.

    python -m benchmarks.encoder_seeds [--steps 300,600,1200] [--seeds 0,1,2,3] [--override KEY=VALUE ...]

Data and recipe are those of ``python -m mjexp.train`` with the overrides (default: the default
experiment, ``+experiment=cfg_sweep``), including the encoder's own caption noise. Each (steps,
seed) encoder trains on the ``train`` split, or is reused from the cache a training run would use,
and is scored by image-to-text top-1 retrieval on ``val``. Prints a Markdown table: one row per
training length with every seed's retrieval, their range and the mean training time.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any, Sequence

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def compose_train_config(overrides: Sequence[str]) -> Any:
    """``conf/train.yaml`` with the overrides (what ``python -m mjexp.train`` would compose)."""
    from hydra import compose, initialize_config_dir

    from mjexp.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="300,600,1200", help="training lengths (domain CLIP steps)")
    parser.add_argument("--seeds", default="0,1,2,3", help="text_encoder.seed values")
    parser.add_argument("--override", action="append", default=None,
                        help="train config override (repeatable; default: +experiment=cfg_sweep)")
    args = parser.parse_args(argv)

    from omegaconf import OmegaConf

    from mjexp.runs.components import build_datamodule, domain_clip_data, domain_clip_settings
    from mjexp.runs.log_noise import quiet_third_party_logs
    from mjexp.text.clip_train import METRICS_FILE, train_domain_clip

    quiet_third_party_logs()
    overrides = args.override if args.override is not None else ["+experiment=cfg_sweep"]
    cfg = compose_train_config(["text_encoder=domain_clip", *overrides])
    datamodule = build_datamodule(cfg.data)
    data = domain_clip_data(cfg.data, cfg.text_encoder, datamodule)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    print(f"overrides: {' '.join(overrides)}; val image->text top-1 retrieval of the domain CLIP")
    print("| steps | " + " | ".join(f"seed {s}" for s in seeds) + " | min-max | mean train s |")
    print("|---|" + "---|" * len(seeds) + "---|---|")
    for steps in [int(s) for s in args.steps.split(",") if s]:
        text_cfg = OmegaConf.merge(cfg.text_encoder, {"steps": steps})
        results = []
        for seed in seeds:
            folder = train_domain_clip(data, domain_clip_settings(text_cfg), cfg.text_encoder.cache_dir, seed=seed)
            results.append(json.loads((folder / METRICS_FILE).read_text()))
        accuracy = [r["val_retrieval_top1"] for r in results]
        seconds = statistics.mean(r["train_seconds"] for r in results)
        print(f"| {steps} | " + " | ".join(f"{a:.3f}" for a in accuracy)
              + f" | {min(accuracy):.3f}-{max(accuracy):.3f} | {seconds:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
