"""``eval.grid``: the sampling settings one evaluation sweeps, as a Cartesian product.

Written nested (``{guidance: {scale: [1, 3]}, sampler: [ddim, dpmpp_2m]}``) or with dotted keys;
``sampler: [...]`` switches the algorithm. Only the keys below can be swept, so a typo fails at
start-up instead of silently evaluating the default.
"""

from __future__ import annotations

import difflib
import itertools
from typing import Any, Mapping

from omegaconf import OmegaConf

# Keys a grid may sweep, and the config node each one sets. ``sampler`` switches the algorithm.
GRID_KEYS = {
    "sampler": "sampler.name",
    "sampler.name": "sampler.name",
    "sampler.steps": "sampler.steps",
    "sampler.spacing": "sampler.spacing",
    "sampler.karras": "sampler.karras",
    "sampler.eta": "sampler.eta",
    "sampler.noise": "sampler.noise",
    "steps": "sampler.steps",
    "guidance.scale": "guidance.scale",
    "guidance.rescale": "guidance.rescale",
    "guidance.schedule": "guidance.schedule",
    "guidance.interval": "guidance.interval",
    "guidance.dynamic_threshold": "guidance.dynamic_threshold",
    "hires.enabled": "hires.enabled",
    "hires.scale": "hires.scale",
    "hires.strength": "hires.strength",
    "hires.steps": "hires.steps",
    "hires.upscaler": "hires.upscaler",
    "hires.guidance_scale": "hires.guidance_scale",
    "hires.noise_aug": "hires.noise_aug",
    "hires.space": "hires.space",
}
def flatten_grid(grid: Any, prefix: str = "") -> dict[str, Any]:
    """``{guidance: {scale: [1, 3]}}`` -> ``{"guidance.scale": [1, 3]}`` (dotted keys pass through)."""
    if OmegaConf.is_config(grid):
        grid = OmegaConf.to_container(grid, resolve=True)
    flat: dict[str, Any] = {}
    for key, value in (grid or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_grid(value, name + "."))
        else:
            flat[name] = value
    return flat


def eval_settings(eval_cfg: Any) -> list[dict[str, Any]]:
    """The settings an evaluation runs: ``eval.grid``'s product, then each of ``eval.extra_grids``'s
    (a setting listed twice runs once, where it first appears)."""
    settings: list[dict[str, Any]] = []
    for grid in [eval_cfg.grid, *(eval_cfg.get("extra_grids") or [])]:
        settings += [s for s in expand_grid(grid) if s not in settings]
    return settings


def expand_grid(grid: Any) -> list[dict[str, Any]]:
    """Cartesian product of ``{key: [values]}``, keys normalised to config paths."""
    grid = flatten_grid(grid)
    if not grid:
        raise ValueError("eval.grid is empty: give at least one setting, e.g. eval.grid='{guidance:{scale:[1,3]}}'")
    unknown = [k for k in grid if k not in GRID_KEYS]
    if unknown:
        hints = [f"{k} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(k, GRID_KEYS, n=1)) else k
                 for k in unknown]
        raise ValueError(f"eval.grid keys {', '.join(hints)} are not sweepable; choose from {sorted(GRID_KEYS)}")
    values = []
    for key, options in grid.items():
        options = list(options) if isinstance(options, (list, tuple)) else [options]
        if not options:
            raise ValueError(f"eval.grid.{key} is an empty list")
        values.append(options)
    return [
        {GRID_KEYS[key]: value for key, value in zip(grid, combination)}
        for combination in itertools.product(*values)
    ]
