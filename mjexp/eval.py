"""``python -m mjexp.eval ckpt=PATH [eval.grid=...]`` or ``python -m mjexp.eval images=DIR``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mjexp.config import register_configs
from mjexp.runs.command import reports_user_errors
from mjexp.runs.eval_run.run import run_evaluation

register_configs()


@hydra.main(config_path="../conf", config_name="eval", version_base="1.3")
@reports_user_errors
def main(cfg: DictConfig) -> None:
    run_evaluation(cfg)


if __name__ == "__main__":
    main()
