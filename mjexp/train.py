"""``python -m mjexp.train [+experiment=NAME] [group=option ...] [key=value ...]``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mjexp.config import register_configs
from mjexp.runs.command import reports_user_errors
from mjexp.runs.train_run import run_training

register_configs()


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
@reports_user_errors
def main(cfg: DictConfig) -> float | None:
    metrics = run_training(cfg)
    # The returned value is what a Hydra sweeper optimises.
    return metrics.get("val/loss")


if __name__ == "__main__":
    main()
