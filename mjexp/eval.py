"""``python -m mjexp.eval ckpt=PATH [eval.grid=...]`` or ``python -m mjexp.eval images=DIR``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mjexp.cli import reports_user_errors
from mjexp.config import register_configs

register_configs()


@hydra.main(config_path="../conf", config_name="eval", version_base="1.3")
@reports_user_errors
def main(cfg: DictConfig) -> None:
    from mjexp.evaluate import run_evaluation

    run_evaluation(cfg)


if __name__ == "__main__":
    main()
