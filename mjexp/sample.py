"""``python -m mjexp.sample ckpt=PATH prompt="a red circle in the top left" n=8 [sampler=...]``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mjexp.cli import reports_user_errors
from mjexp.config import register_configs

register_configs()


@hydra.main(config_path="../conf", config_name="sample", version_base="1.3")
@reports_user_errors
def main(cfg: DictConfig) -> None:
    from mjexp.inference import run_sampling

    run_sampling(cfg)


if __name__ == "__main__":
    main()
