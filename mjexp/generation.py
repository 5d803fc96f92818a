"""Generate a prompt set to disk: PNGs plus a manifest, resumable after a crash.

Layout of a generation folder::

    images/p00012_s003.png        item (prompt 12, sample 3)
    base/p00012_s003.png          hires fix only: the first-stage image
    manifest.jsonl                one row per item: file, prompt, indices, seed, settings, costs

Rows are appended (and fsynced) only after an item's PNGs are on disk, so a killed run leaves a
manifest that lists exactly the finished items; re-running skips them, so the final set has no
duplicates and no gaps. Under DDP every rank appends to its own shard (``manifest.rank<k>.jsonl``)
and :func:`read_manifest` merges them.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from torch.utils.data import DataLoader, Dataset

MANIFEST = "manifest.jsonl"
# Settings keys added after generation folders were first written, with the value that made those
# folders' images: an older folder is resumed as what it is instead of refused as "other settings".
ADDED_SETTINGS: dict[tuple[str, ...], Any] = {("sampler", "noise"): "independent"}


def item_name(prompt_index: int, sample_index: int) -> str:
    return f"p{prompt_index:05d}_s{sample_index:03d}.png"


def to_png_array(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [-1, 1] -> (H, W, 3) uint8, rounding to nearest (the quantisation policy)."""
    return ((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def image_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that shape the images: a disabled hires block counts as ``{"enabled": False}``
    whatever its other fields say (they changed default since folders were written; a disabled
    second pass never reads them)."""
    effective = dict(settings)
    hires = effective.get("hires")
    if isinstance(hires, Mapping) and not hires.get("enabled", False):
        effective["hires"] = {"enabled": False}
    return effective


def with_added_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` (a manifest row's) with every key of :data:`ADDED_SETTINGS` it lacks filled in."""
    filled = copy.deepcopy(dict(settings))
    for path, value in ADDED_SETTINGS.items():
        node = filled
        for key in path[:-1]:
            node = node.get(key)
            if not isinstance(node, dict):
                break
        else:
            node.setdefault(path[-1], value)
    return filled


def read_manifest(folder: str | Path) -> dict[tuple[int, int], dict[str, Any]]:
    """All finished items of a folder (every rank's shard), keyed by (prompt index, sample index).

    A torn last line (a crash mid-append) is ignored; rows whose PNG is missing are dropped.
    """
    folder = Path(folder)
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    for shard in sorted(folder.glob("manifest*.jsonl")):
        for line in shard.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if (folder / row["file"]).is_file():
                rows[(row["prompt_index"], row["sample_index"])] = row
    return rows


class PromptItems(Dataset):
    """The (prompt, sample) items of a prompt set that are not finished yet."""

    def __init__(self, prompts: Sequence[str], samples_per_prompt: int, done: set[tuple[int, int]] = frozenset()):
        self.items = [
            (i, j) for i in range(len(prompts)) for j in range(samples_per_prompt) if (i, j) not in done
        ]
        self.prompts = list(prompts)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i, j = self.items[index]
        return {"prompt": self.prompts[i], "prompt_index": i, "sample_index": j}


class ManifestWriter(BasePredictionWriter):
    """Writes each predicted batch's PNGs, then appends its manifest rows."""

    def __init__(self, folder: Path, seed: int, settings: Mapping[str, Any]) -> None:
        super().__init__(write_interval="batch")
        self.folder, self.seed, self.settings = folder, seed, dict(settings)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        shard = self.folder / (MANIFEST if trainer.world_size == 1 else f"manifest.rank{trainer.global_rank}.jsonl")
        rows = []
        for k, (i, j) in enumerate(zip(prediction["prompt_index"].tolist(), prediction["sample_index"].tolist())):
            name = item_name(i, j)
            row = {
                "file": f"images/{name}", "prompt": prediction["prompt"][k], "prompt_index": i, "sample_index": j,
                "seed": self.seed, "settings": self.settings,
                "nfe": prediction["nfe"], "network_evals": prediction["network_evals"],
            }
            Image.fromarray(to_png_array(prediction["images"][k])).save(self.folder / "images" / name)
            if "base_images" in prediction:
                Image.fromarray(to_png_array(prediction["base_images"][k])).save(self.folder / "base" / name)
                row["base_file"] = f"base/{name}"
            rows.append(json.dumps(row))
        with open(shard, "a", encoding="utf-8") as f:
            f.write("\n".join(rows) + "\n")
            f.flush()
            os.fsync(f.fileno())


def collate_items(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "prompt": [it["prompt"] for it in items],
        "prompt_index": torch.tensor([it["prompt_index"] for it in items]),
        "sample_index": torch.tensor([it["sample_index"] for it in items]),
    }


def generate_to_folder(
    sampler_module: L.LightningModule,
    prompts: Sequence[str],
    samples_per_prompt: int,
    folder: str | Path,
    settings: Mapping[str, Any],
    batch_size: int,
    trainer_kwargs: Mapping[str, Any] | None = None,
) -> dict[tuple[int, int], dict[str, Any]]:
    """Generate every missing item of the prompt set into ``folder``; returns the full manifest."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "base").mkdir(exist_ok=True)
    done = read_manifest(folder)
    wanted = image_settings(settings)
    stale = [row for row in done.values() if image_settings(with_added_settings(row.get("settings") or {})) != wanted]
    if stale:
        raise ValueError(
            f"{folder} holds images made with other settings ({stale[0].get('settings')}); "
            f"use a new folder or delete it"
        )
    todo = PromptItems(prompts, samples_per_prompt, set(done))
    if len(todo):
        loader = DataLoader(todo, batch_size=batch_size, shuffle=False, collate_fn=collate_items)
        kwargs = {"accelerator": "auto", "devices": 1, "logger": False, "enable_model_summary": False,
                  "enable_checkpointing": False, **dict(trainer_kwargs or {})}
        callbacks = [ManifestWriter(folder, sampler_module.seed, settings), *kwargs.pop("callbacks", [])]
        trainer = L.Trainer(callbacks=callbacks, **kwargs)
        trainer.predict(sampler_module, loader, return_predictions=False)
    manifest = read_manifest(folder)
    expected = {(i, j) for i in range(len(prompts)) for j in range(samples_per_prompt)}
    if set(manifest) != expected:
        missing = sorted(expected - set(manifest))[:5]
        raise RuntimeError(f"generation in {folder} is incomplete: missing items {missing}")
    return manifest


def load_images(folder: str | Path, rows: Sequence[Mapping[str, Any]], key: str = "file") -> torch.Tensor:
    """The PNGs named by ``rows[key]`` as one uint8 (N, 3, H, W) tensor (what gets scored)."""
    folder = Path(folder)
    arrays = [np.asarray(Image.open(folder / row[key]).convert("RGB")) for row in rows]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
