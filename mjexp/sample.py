"""``python -m mjexp.sample ckpt=PATH prompt="a red circle in the top left" n=8 [sampler=...]``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mjexp.config import register_configs
from mjexp.runs.command import reports_user_errors
from mjexp.runs.sample_run import run_sampling

register_configs()


@hydra.main(config_path="../conf", config_name="sample", version_base="1.3")
@reports_user_errors
def main(cfg: DictConfig) -> None:
    run_sampling(cfg)


if __name__ == "__main__":
    main()
