"""The settings an evaluation runs: eval.grid's product, then each of eval.extra_grids'."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from mjexp.config.grid import eval_settings


def test_extra_grids_follow_the_grid_and_a_repeated_setting_runs_once() -> None:
    cfg = OmegaConf.create({
        "grid": {"guidance": {"scale": [1.0, 3.0]}},
        "extra_grids": [
            {"guidance": {"scale": [3.0]}, "hires": {"enabled": [True], "space": ["latent", "pixel"]}},
            {"guidance": {"scale": [3.0]}},  # already in the grid
        ],
    })
    assert eval_settings(cfg) == [
        {"guidance.scale": 1.0}, {"guidance.scale": 3.0},
        {"guidance.scale": 3.0, "hires.enabled": True, "hires.space": "latent"},
        {"guidance.scale": 3.0, "hires.enabled": True, "hires.space": "pixel"},
    ]
    assert eval_settings(OmegaConf.create({"grid": {"steps": [5]}})) == [{"sampler.steps": 5}]


def test_an_extra_grid_with_an_unknown_key_is_refused() -> None:
    with pytest.raises(ValueError, match="hires.spaces .*did you mean hires.space"):
        eval_settings(OmegaConf.create({"grid": {"steps": [5]}, "extra_grids": [{"hires": {"spaces": ["pixel"]}}]}))
