"""The work behind ``python -m mjexp.sample``: prompts -> PNGs, a manifest and a grid."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from evaluation.grids import SampleGrid, grid_png
from mjexp.config import validate
from mjexp.config.domain import sampling_settings
from mjexp.files.lock import run_folder_lock
from mjexp.runs.components import describe_sampling
from mjexp.runs.generation import generate_to_folder, load_images
from mjexp.runs.models import images_fingerprint, load_model, load_sr_model
from mjexp.sampling.runtime import Runtime

GRID_PROMPTS = 32  # rows of grid.png (every image is in images/ and the manifest)
GRID_SAMPLES = 16  # images per row


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from a .txt file (one per non-empty line) or .jsonl (a ``prompt`` field per row)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompts file {path} does not exist")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        prompts = []
        for number, line in enumerate(lines, 1):
            row = json.loads(line)
            if "prompt" not in row:
                raise ValueError(f"{path} row {number} has no 'prompt' field")
            prompts.append(row["prompt"])
    else:
        prompts = [line.strip() for line in lines]
    if not prompts:
        raise ValueError(f"prompts file {path} is empty: give one prompt per line (.txt) or per row (.jsonl)")
    return prompts


def run_sampling(cfg: DictConfig) -> Path:
    validate(cfg)
    if (cfg.prompt is None) == (cfg.prompts is None):
        raise ValueError('give exactly one of prompt="..." or prompts=FILE (.txt or .jsonl)')
    prompts = [cfg.prompt] if cfg.prompt is not None else read_prompts(cfg.prompts)
    sampling = OmegaConf.create({"sampler": cfg.sampler, "guidance": cfg.guidance, "hires": cfg.hires})
    hires = sampling_settings(sampling)[2]
    loaded = load_model(cfg.ckpt, weights=cfg.weights, allow_download=cfg.allow_download)
    sr_model = load_sr_model(cfg.hires.model, cfg.weights, cfg.allow_download) if hires.uses_sr else None
    module = loaded.guidance_sampler(sampling, cfg.seed, Runtime(cfg.precision, cfg.compile, cfg.cuda_graphs), sr_model)
    out = Path(cfg.output_dir)
    how = describe_sampling(sampling)
    print(f"Sampling {len(prompts)} prompt(s) x {cfg.n}: {how}")
    with run_folder_lock(out):
        manifest = generate_to_folder(
            module, prompts, cfg.n, out, OmegaConf.to_container(sampling, resolve=True), cfg.batch_size,
            trainer_kwargs={"accelerator": cfg.device}, model=images_fingerprint(loaded, sr_model),
        )
    rows = [manifest[key] for key in sorted(manifest)]
    shown = write_grid(out, rows, prompts, cfg.n, how)
    print(f"{len(rows)} images in {out / 'images'}; grid {out / 'grid.png'}"
          + ("" if shown == len(prompts) else f" (the first {shown} of {len(prompts)} prompts)")
          + f"; manifest {out / 'manifest.jsonl'}")
    return out


def write_grid(out: Path, rows: list[dict], prompts: list[str], n: int, title: str) -> int:
    """``grid.png``: one row per prompt (its text above it), at most :data:`GRID_PROMPTS` rows of
    :data:`GRID_SAMPLES` images, so a long prompt file does not make a picture nobody can open;
    returns the number of prompts shown."""
    shown, columns = min(len(prompts), GRID_PROMPTS), min(n, GRID_SAMPLES)
    picked = [row for row in rows if row["prompt_index"] < shown and row["sample_index"] < columns]
    grid = SampleGrid(load_images(out, picked), [prompts[i] for i in range(shown)], columns, title)
    (out / "grid.png").write_bytes(grid_png(grid))
    return shown
