"""The work behind ``python -m mjexp.sample``: prompts -> PNGs, a manifest and a grid."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torchvision.utils import make_grid

from mjexp.builders import sampling_settings
from mjexp.config import validate
from mjexp.export import images_fingerprint, load_model, load_sr_model
from mjexp.generation import generate_to_folder, load_images
from mjexp.sampling.module import GuidanceSampler
from mjexp.sampling.runtime import Runtime


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
    sampler, guidance, hires, negative = sampling_settings(sampling)
    loaded = load_model(cfg.ckpt, weights=cfg.weights, allow_download=cfg.allow_download)
    sr_model = load_sr_model(cfg.hires.model, cfg.weights, cfg.allow_download) if hires.uses_sr else None
    module = GuidanceSampler(
        loaded.unet, loaded.text_encoder, loaded.schedule, int(loaded.config["data"]["resolution"]),
        sampler, guidance, hires, negative, seed=cfg.seed,
        runtime=Runtime(cfg.precision, cfg.compile, cfg.cuda_graphs), sr_model=sr_model,
    )
    out = Path(cfg.output_dir)
    manifest = generate_to_folder(
        module, prompts, cfg.n, out, OmegaConf.to_container(sampling, resolve=True), cfg.batch_size,
        trainer_kwargs={"accelerator": cfg.device}, model=images_fingerprint(loaded, sr_model),
    )
    rows = [manifest[key] for key in sorted(manifest)]
    grid = make_grid(load_images(out, rows), nrow=cfg.n, padding=1)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(out / "grid.png")
    print(f"{len(rows)} images in {out / 'images'}; grid {out / 'grid.png'}; manifest {out / 'manifest.jsonl'}")
    return out
