"""Every experiment in conf/experiment/ composes, validates and expands to the arms it promises;
the slow test runs them all with ``debug=tiny`` (as lightning-hydra-template's test_sweeps does)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from mjexp.config import register_configs, validate
from mjexp.config.grid import eval_settings, expand_grid
from sweeps_helpers import REPO, cache_overrides, describe, run_multirun, runs_by_kind  # noqa: F401

EXPERIMENTS = REPO / "conf" / "experiment"
# experiment -> (trainings per seed in a multirun, evaluated settings per training)
EXPECTED = {
    "cfg_sweep": (1, 5),
    "schedule_ablation": (6, 4),
    "param_ablation": (3, 4),
    "sampler_steps": (1, 28),
    "hires_ablation": (1, 12),
    "guidance_variants": (1, 12),
    "caption_noise": (4, 5),
    "caption_noise_clean_encoder": (2, 5),
    "train_sr": (1, 0),  # a super-resolution model: evaluated through a base model's hires fix
    "latent_cfg_sweep": (1, 7),  # five guidance scales, then the hires fix in two spaces (eval.extra_grids)
}


def compose_train(*overrides: str) -> DictConfig:
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=["output_dir=unused", *overrides], return_hydra_config=True)


def sweep_arms(cfg: DictConfig) -> list[list[str]]:
    """The job overrides Hydra's basic sweeper makes from an experiment's ``hydra.sweeper.params``."""
    params = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.params or {}).items()]
    return BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)[0]


def test_every_experiment_is_covered() -> None:
    assert sorted(p.stem for p in EXPERIMENTS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_experiment_composes_validates_and_expands(name: str) -> None:
    text = (EXPERIMENTS / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    trainings, settings = EXPECTED[name]
    cfg = compose_train(f"+experiment={name}", "debug=tiny")
    assert cfg.name == name  # the MLflow experiment the runs land in
    assert (len(eval_settings(cfg.eval)) if cfg.eval.grid else 0) == settings
    arms = sweep_arms(cfg)
    assert len(arms) == trainings
    for arm in arms:
        validate(compose_train(f"+experiment={name}", "debug=tiny", *arm))


def test_schedule_ablation_trains_every_schedule_with_and_without_zero_terminal_snr_using_v() -> None:
    arms = sweep_arms(compose_train("+experiment=schedule_ablation"))
    configs = [compose_train("+experiment=schedule_ablation", *arm) for arm in arms]
    assert {(c.schedule.kind, c.schedule.zero_terminal_snr) for c in configs} == {
        (kind, zt) for kind in ("linear", "cosine", "sigmoid") for zt in (False, True)
    }
    assert {c.diffusion.parameterization for c in configs} == {"v"}


def test_param_ablation_and_eval_time_experiments_sweep_what_they_say() -> None:
    param = [compose_train("+experiment=param_ablation", *arm) for arm in sweep_arms(compose_train("+experiment=param_ablation"))]
    assert sorted(c.diffusion.parameterization for c in param) == ["eps", "v", "x0"]
    samplers = expand_grid(compose_train("+experiment=sampler_steps").eval.grid)
    assert {s["sampler.name"] for s in samplers} == {"ddim", "ddpm", "euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde"}
    hires = compose_train("+experiment=hires_ablation")
    assert hires.hires.enabled and {s["hires.upscaler"] for s in expand_grid(hires.eval.grid)} == {"nearest", "bicubic"}
    variants = expand_grid(compose_train("+experiment=guidance_variants").eval.grid)
    assert {(s["guidance.rescale"], str(s["guidance.interval"])) for s in variants} == {
        (0.0, "None"), (0.0, "[0.28, 5.42]"), (0.7, "None"), (0.7, "[0.28, 5.42]")
    }


@pytest.mark.slow
def test_every_experiment_runs_with_debug_tiny(tmp_path: Path, cache_overrides: tuple[str, ...]) -> None:
    """One multirun over all experiments (each with its own default arm) with the debug overlay."""
    done = run_multirun(
        f"+experiment={','.join(sorted(EXPECTED))}", "debug=tiny", *cache_overrides,
        cwd=tmp_path, timeout=1500,
    )
    assert done.returncode == 0, describe(done)
    assert f"{len(EXPECTED)} of {len(EXPECTED)} jobs succeeded" in done.stdout + done.stderr
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for name, (_, settings) in EXPECTED.items():
        parents, children = runs_by_kind(client, name)
        assert [r.info.status for r in parents] == ["FINISHED"], name
        assert len(children) == settings and all(c.info.status == "FINISHED" for c in children), name
