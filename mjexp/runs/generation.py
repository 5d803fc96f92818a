"""Generate a prompt set to disk: PNGs plus a manifest, resumable after a crash.

Layout of a generation folder::

    images/p00012_s003.png        item (prompt 12, sample 3)
    base/p00012_s003.png          hires fix only: the first-stage image
    manifest.jsonl                one row per item: file, prompt, indices, model, resolution, seed, settings, costs

Rows are appended (and fsynced) only after an item's PNGs are on disk, so a killed run leaves a
manifest that lists exactly the finished items; re-running skips them, so the final set has no
duplicates and no gaps. Under DDP every rank appends to its own shard (``manifest.rank<k>.jsonl``)
and :func:`read_manifest` merges them. A stop signal (:mod:`mjexp.runs.signals`) ends generation after
the batch being written; a full disk is one error naming the file.

A finished item is reused only when everything that made it matches: each row records its source
(the models' fingerprint, resolution, seed and sampling settings) and its prompt. An item whose
prompt changed is generated again; a folder holding images of another source is refused, naming
what differs, or (``replace_other_source``, a training's own evaluation folder) emptied and made again.
"""

from __future__ import annotations

import copy
import json
import shutil
import signal
from pathlib import Path
from typing import Any, Mapping, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from mjexp.files.checkpoints import atomic_write
from mjexp.files.disk import append_durably, names_full_disk
from mjexp.runs import signals

MANIFEST = "manifest.jsonl"
CONTINUE = "rerun into the same output folder (a training: with ckpt_path=last) to continue after the finished images"
MANIFEST_SHARDS = "manifest*.jsonl"
NOT_RECORDED = "not recorded"  # a manifest field written before mjexp recorded it
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


def manifest_lines(shard: Path) -> list[tuple[str, dict[str, Any]]]:
    """(line, row) of every complete line of a shard; a torn last line (a crash mid-append) is skipped."""
    lines = []
    for line in shard.read_text(encoding="utf-8").splitlines():
        try:
            lines.append((line, json.loads(line)))
        except json.JSONDecodeError:
            continue
    return lines


def read_manifest(folder: str | Path) -> dict[tuple[int, int], dict[str, Any]]:
    """All finished items of a folder (every rank's shard), keyed by (prompt index, sample index).

    Rows whose PNG is missing are dropped.
    """
    folder = Path(folder)
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    for shard in sorted(folder.glob(MANIFEST_SHARDS)):
        for _, row in manifest_lines(shard):
            if (folder / row["file"]).is_file():
                rows[(row["prompt_index"], row["sample_index"])] = row
    return rows


def drop_rows(folder: Path, keys: set[tuple[int, int]]) -> None:
    """Rewrite every shard without the rows of ``keys`` (atomically: a crash leaves either manifest)."""
    for shard in sorted(folder.glob(MANIFEST_SHARDS)):
        kept = [line for line, row in manifest_lines(shard) if (row["prompt_index"], row["sample_index"]) not in keys]
        text = "".join(f"{line}\n" for line in kept)
        atomic_write(shard, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))


def empty_folder(folder: Path) -> None:
    """Remove a generation folder's manifests first (so a crash leaves no row without its image), then its images."""
    for shard in folder.glob(MANIFEST_SHARDS):
        shard.unlink()
    for images in ("images", "base"):
        shutil.rmtree(folder / images, ignore_errors=True)


def short_fingerprint(fingerprint: str) -> str:
    """The first 12 hex digits of each model's fingerprint (enough to tell them apart in a message)."""
    return "+".join(part[:12] for part in fingerprint.split("+"))


def flat_settings(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"sampler": {"steps": 20}}`` -> ``{"sampler.steps": 20}``."""
    items: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            items.update(flat_settings(value, f"{prefix}{key}."))
        else:
            items[f"{prefix}{key}"] = value
    return items


def source_differences(row: Mapping[str, Any], source: Mapping[str, Any]) -> list[str]:
    """What of ``source`` (model, resolution, seed, settings) a manifest row's images were not
    made with, in words; empty when they were. A row from before a field was recorded differs in it."""
    differences = []
    if row.get("model") != source["model"]:
        then = short_fingerprint(row["model"]) if row.get("model") else NOT_RECORDED
        differences.append(f"model weights ({then}, now {short_fingerprint(source['model'])})")
    for key in ("resolution", "seed"):
        if row.get(key) != source[key]:
            differences.append(f"{key} ({row.get(key, NOT_RECORDED)}, now {source[key]})")
    made = flat_settings(image_settings(with_added_settings(row.get("settings") or {})))
    wanted = flat_settings(image_settings(source["settings"]))
    then_now = {key: (made.get(key, NOT_RECORDED), wanted.get(key, NOT_RECORDED)) for key in made.keys() | wanted.keys()}
    changed = sorted(key for key, (then, now) in then_now.items() if then != now)
    if changed:
        listed = ", ".join(f"{key}={then_now[key][0]}, now {then_now[key][1]}" for key in changed[:3])
        differences.append(f"settings ({listed}{' ...' if len(changed) > 3 else ''})")
    return differences


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

    def __init__(self, folder: Path, source: Mapping[str, Any]) -> None:
        super().__init__(write_interval="batch")
        self.folder, self.source = folder, dict(source)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        with names_full_disk(self.folder, f"free space, then {CONTINUE}"):
            self.write_batch(trainer, prediction)
        if trainer.strategy.reduce_boolean_decision(signals.requested() is not None, all=False):
            done = len(read_manifest(self.folder))
            detail = f"with {done} images in {self.folder}; {CONTINUE}"
            raise signals.Interrupted(signals.requested() or signal.SIGTERM, detail)

    def write_batch(self, trainer: L.Trainer, prediction: Mapping[str, Any]) -> None:
        """The batch's PNGs, then its manifest rows."""
        shard = self.folder / (MANIFEST if trainer.world_size == 1 else f"manifest.rank{trainer.global_rank}.jsonl")
        rows = []
        for k, (i, j) in enumerate(zip(prediction["prompt_index"].tolist(), prediction["sample_index"].tolist())):
            name = item_name(i, j)
            row = {
                "file": f"images/{name}", "prompt": prediction["prompt"][k], "prompt_index": i, "sample_index": j,
                **self.source,
                "nfe": prediction["nfe"], "network_evals": prediction["network_evals"],
            }
            if "decode_seconds" in prediction:  # a latent model's decoding, per image
                row["decode_seconds"] = prediction["decode_seconds"] / len(prediction["prompt"])
            Image.fromarray(to_png_array(prediction["images"][k])).save(self.folder / "images" / name)
            if "base_images" in prediction:
                Image.fromarray(to_png_array(prediction["base_images"][k])).save(self.folder / "base" / name)
                row["base_file"] = f"base/{name}"
            rows.append(json.dumps(row))
        append_durably(shard, ("\n".join(rows) + "\n").encode("utf-8"))


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
    *,
    model: str,
    replace_other_source: bool = False,
) -> dict[tuple[int, int], dict[str, Any]]:
    """Generate every missing item of the prompt set into ``folder``; returns its manifest rows.

    ``model`` identifies the networks of ``sampler_module`` (:func:`mjexp.runs.models.images_fingerprint`).
    Finished items of the same source and prompt are reused; see the module docstring for the rest.
    """
    folder = Path(folder)
    source = {"model": model, "resolution": int(sampler_module.resolution), "seed": int(sampler_module.seed),
              "settings": dict(settings)}
    done = read_manifest(folder)
    other = {key: why for key, row in done.items() if (why := source_differences(row, source))}
    if other:
        text = f"{folder} holds {len(other)} images made with other {'; '.join(other[min(other)])}"
        if not replace_other_source:
            raise ValueError(f"{text}; use a new output folder or delete this one")
        print(f"{text}: generating them again")
        empty_folder(folder)
        done = {}
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "base").mkdir(exist_ok=True)
    expected = {(i, j) for i in range(len(prompts)) for j in range(samples_per_prompt)}
    changed = sorted(key for key in expected & done.keys() if done[key]["prompt"] != prompts[key[0]])
    if changed:
        first = changed[0]
        print(f"{folder}: {len(changed)} images were made for another prompt (e.g. {item_name(*first)}: "
              f"{done[first]['prompt']!r}, now {prompts[first[0]]!r}); generating them again")
        drop_rows(folder, set(changed))
    reused = (expected & done.keys()) - set(changed)
    if reused:
        print(f"{folder}: reusing {len(reused)} of {len(expected)} images made before by the same model, prompts, "
              "seed and settings")
    todo = PromptItems(prompts, samples_per_prompt, reused)
    if len(todo):
        loader = DataLoader(todo, batch_size=batch_size, shuffle=False, collate_fn=collate_items)
        kwargs = {"accelerator": "auto", "devices": 1, "logger": False, "enable_model_summary": False,
                  "enable_checkpointing": False, **dict(trainer_kwargs or {})}
        callbacks = [ManifestWriter(folder, source), *kwargs.pop("callbacks", [])]
        trainer = L.Trainer(callbacks=callbacks, **kwargs)
        with signals.deferred():  # a stop signal ends it after the batch being written (ManifestWriter)
            trainer.predict(sampler_module, loader, return_predictions=False)
    manifest = read_manifest(folder)
    missing = sorted(expected - set(manifest))
    if missing:
        raise RuntimeError(f"generation in {folder} is incomplete: missing items {missing[:5]}")
    return {key: manifest[key] for key in sorted(expected)}


def load_images(folder: str | Path, rows: Sequence[Mapping[str, Any]], key: str = "file") -> torch.Tensor:
    """The PNGs named by ``rows[key]`` as one uint8 (N, 3, H, W) tensor (what gets scored)."""
    folder = Path(folder)
    arrays = [np.asarray(Image.open(folder / row[key]).convert("RGB")) for row in rows]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
