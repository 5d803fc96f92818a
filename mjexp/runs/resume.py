"""Where a training continues from, and whether it may.

``ckpt_path=last`` continues the run's own output folder: in a multirun the job's own subfolder
(a job never takes a sibling's checkpoint; with none yet it starts from step 0), in a single run
its folder, else the newest run folder of the same experiment (``<output root>/*``). A requeued
SLURM job (``SLURM_RESTART_COUNT`` > 0) does the same without being asked. ``ckpt_path=PATH``
continues the run folder that holds PATH (``<run>/checkpoints/PATH``; a file elsewhere continues
in this run's folder).

In the folder it takes the newest checkpoint by training step that loads (a kill between writing
``step=N.ckpt`` and ``last.ckpt`` must not cost a step), after removing what a killed save left:
temporary files and the ``-v1``/``-v2`` copies older versions made of a name already taken. A
checkpoint whose stored config differs from the requested one is refused, naming each key and both
values, unless the key is one of :data:`RESUMABLE_CHANGES`: a resumed run is the same run.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from mjexp.files.checkpoints import TEMP_FILE_PATTERN, CheckpointError, load_torch_file
from mjexp.runs.run_info import read_run_id
from mjexp.tracking.mlflow import flatten

CHECKPOINT_DIR = "checkpoints"
EXPORT_DIR = "export"
# Config keys (or prefixes ending in ".") a resumed run may change: how long it trains, what and
# how often it logs, checkpoints, validates and evaluates, where it writes and tracks. None of them
# changes the weights of the steps already trained (validation draws from its own generator).
RESUMABLE_CHANGES = (
    "output_dir", "ckpt_path", "name", "evaluate",
    "text_encoder.path", "text_encoder.cache_dir",  # where a domain CLIP is cached, not what it is
    "autoencoder.path", "autoencoder.cache_dir",  # where a trained autoencoder is cached (autoencoder=kl)
    "trainer.max_steps", "trainer.log_every_n_steps", "trainer.checkpoint_every_n_steps",
    "trainer.val_check_interval", "trainer.limit_val_batches", "trainer.num_sanity_val_steps",
    "trainer.sample_every_n_steps", "trainer.enable_progress_bar",
    "tracking.", "eval.", "sampler.", "guidance.", "hires.",  # evaluation and tracking only
)
# ModelCheckpoint's copies of a taken name ("last-v1.ckpt", "step=000004-v2.ckpt").
VERSIONED = re.compile(r"^(?P<base>.+)-v\d+\.ckpt$")


@dataclass
class Resume:
    """Where a resumed training continues: its checkpoint, output folder and MLflow run."""

    checkpoint: Path
    output_dir: Path
    run_id: str | None


def has_checkpoints(run_dir: Path) -> bool:
    return any((run_dir / CHECKPOINT_DIR).glob("*.ckpt"))


def continued_folder(ckpt_path: str | None, output_dir: Path, own_folder_only: bool, requeued: bool) -> Path | None:
    """The run folder a training continues (None: a new run in ``output_dir``); see the module doc."""
    if ckpt_path is None and requeued:
        ckpt_path, own_folder_only = "last", True
    if not ckpt_path:
        return None
    if ckpt_path != "last":
        checkpoint = Path(ckpt_path).resolve()
        if not checkpoint.is_file():
            raise CheckpointError(f"ckpt_path={ckpt_path}: checkpoint {checkpoint} does not exist")
        # A checkpoint from outside a run folder continues in this run's folder.
        return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINT_DIR else output_dir
    if has_checkpoints(output_dir):
        return output_dir
    if own_folder_only:
        print(f"No checkpoint in {output_dir / CHECKPOINT_DIR} yet: this job starts at step 0")
        return None
    siblings = [p for p in output_dir.parent.glob("*") if p != output_dir and has_checkpoints(p)]
    if not siblings:
        raise CheckpointError(
            f"ckpt_path=last: no checkpoints under {output_dir.parent}/*/{CHECKPOINT_DIR}; "
            "pass ckpt_path=PATH to a .ckpt file"
        )
    return max(siblings, key=lambda p: (p / CHECKPOINT_DIR).stat().st_mtime)


def remove_debris(run_dir: Path) -> None:
    """Delete the temporary files of saves a kill interrupted, and fold each name's ``-vN`` copies
    into the newest one under the plain name. Only ever called with the folder's lock held."""
    for folder in (CHECKPOINT_DIR, EXPORT_DIR):  # the folders written with atomic_write
        for leftover in (run_dir / folder).glob(TEMP_FILE_PATTERN):
            leftover.unlink()
    groups: dict[Path, list[Path]] = {}
    for path in (run_dir / CHECKPOINT_DIR).glob("*-v*.ckpt"):
        match = VERSIONED.match(path.name)
        if match:
            plain = path.with_name(match["base"] + ".ckpt")
            groups.setdefault(plain, [plain] if plain.exists() else []).append(path)
    for plain, copies in groups.items():
        newest = max(copies, key=lambda p: p.stat().st_mtime)
        for path in copies:
            if path != newest:
                path.unlink()
        newest.replace(plain)


def stored_step(path: Path) -> int:
    """The global step a checkpoint was written at, read without loading its tensors."""
    checkpoint = load_torch_file(path, mmap=True)
    return int(checkpoint.get("global_step", -1)) if isinstance(checkpoint, dict) else -1


def newest_checkpoint(folder: Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint with the highest training step that loads (and its contents). Files that do
    not load are named in a warning; none loading is one error naming each file."""
    ranked, problems = [], []
    for path in folder.glob("*.ckpt"):
        try:
            ranked.append((stored_step(path), path.stat().st_mtime, path))
        except CheckpointError as error:
            problems.append(str(error))
    for _, _, candidate in sorted(ranked, reverse=True):
        try:
            checkpoint = load_torch_file(candidate)
        except CheckpointError as error:
            problems.append(str(error))
            continue
        if problems:
            warnings.warn("; ".join(problems) + f"; resuming from {candidate} instead", stacklevel=2)
        return candidate, checkpoint
    raise CheckpointError(f"no readable checkpoint in {folder}" + (": " + "; ".join(problems) if problems else ""))


def config_differences(stored: Mapping[str, Any], requested: Mapping[str, Any]) -> list[str]:
    """``key: checkpoint X vs requested Y`` for each key outside :data:`RESUMABLE_CHANGES` that differs."""
    old, new = flatten(stored), flatten(requested)
    missing = "(absent)"
    return [
        f"{key}: checkpoint {old.get(key, missing)} vs requested {new.get(key, missing)}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key) and not any(
            key == allowed or (allowed.endswith(".") and key.startswith(allowed)) for allowed in RESUMABLE_CHANGES
        )
    ]


def open_resume(ckpt_path: str | None, run_dir: Path, requested: Mapping[str, Any]) -> Resume:
    """The checkpoint to continue ``run_dir`` from, checked against the ``requested`` config."""
    if ckpt_path and ckpt_path != "last":
        checkpoint_file, checkpoint = Path(ckpt_path), load_torch_file(ckpt_path)
    else:
        checkpoint_file, checkpoint = newest_checkpoint(run_dir / CHECKPOINT_DIR)
    stored = checkpoint.get("mjexp_config") if isinstance(checkpoint, dict) else None
    if stored is None:
        raise CheckpointError(f"{checkpoint_file} is not an mjexp training checkpoint (no mjexp_config)")
    differences = config_differences(stored, requested)
    if differences:
        raise CheckpointError(
            f"checkpoint {checkpoint_file} belongs to a run with another config ({'; '.join(differences)}); "
            "resume it with the same settings, or start a new run in a new folder"
        )
    return Resume(checkpoint_file, run_dir, read_run_id(run_dir))


def refuse_to_overwrite(run_dir: Path) -> None:
    """A new run must not write into a folder that holds another run's checkpoints."""
    if has_checkpoints(run_dir):
        raise CheckpointError(
            f"{run_dir} already holds checkpoints of a run: continue it with ckpt_path=last, or give this run "
            "a new folder"
        )
