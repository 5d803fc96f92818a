"""What produced a run: git commit and uncommitted diff, package versions, installed packages."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

KEY_PACKAGES = ("torch", "lightning", "hydra-core", "open_clip_torch", "transformers", "torch-fidelity", "mlflow")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def provenance_tags(source_dir: Path) -> dict[str, str]:
    """MLflow tags: git commit and dirtiness of ``source_dir``, Python and key package versions."""
    tags = {"python": platform.python_version()}
    for name in KEY_PACKAGES:
        try:
            tags[f"version.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    commit = _git(["rev-parse", "HEAD"], source_dir)
    if commit:
        tags["mlflow.source.git.commit"] = commit.strip()
        tags["git.dirty"] = str(bool(_git(["status", "--porcelain"], source_dir)))
    return tags


def write_provenance_files(source_dir: Path, out_dir: Path) -> list[Path]:
    """``pip-freeze.txt`` and (when in a git checkout) ``git-diff.patch`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    freeze = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"])
    files = [out_dir / "pip-freeze.txt"]
    files[0].write_text("\n".join(freeze) + "\n")
    diff = _git(["diff", "HEAD"], source_dir)
    if diff is not None:
        files.append(out_dir / "git-diff.patch")
        files[1].write_text(diff)
    return files
