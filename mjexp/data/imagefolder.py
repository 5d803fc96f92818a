"""A folder of images with captions, in the Hugging Face ``imagefolder`` convention.

``root/metadata.jsonl`` (one JSON object per line) or ``root/metadata.csv`` (with a header) holds a
``file_name`` (relative to ``root``) and a caption column (``text`` by default) per row; several rows
may share an image (several captions). Files in the folder without a row are not used.

Every image is decoded once at setup, converted (see :mod:`mjexp.data.pil_images`), resized and
centre-cropped to the resolution and kept in memory as uint8 (N x 3 x R x R bytes), so problems
surface before training and epochs cost no decoding. Problems with single rows (missing, corrupt,
truncated, zero-byte or too large images, non-UTF-8 or empty captions) skip the row and are
counted in one :class:`ImageFolderWarning`; problems with the folder or the metadata structure
(no folder, no metadata, malformed JSON, missing columns) are errors naming the file and line, and
so is a row naming a file outside ``root`` (an absolute path, ``..`` or a symlink leading out),
unless ``allow_outside_root``: a downloaded dataset must not read arbitrary files of this machine.

Splits hash each file name into train/judge/val/test by fraction, so adding files never moves
others and all captions of one image share a split.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from mjexp.data.datamodule import CaptionedImageDataModule, TensorCaptionDataset
from mjexp.data.pil_images import UnusableImage, load_rgb
from mjexp.data.dataset_settings import ImageFolderSettings
from mjexp.data.splits import hash_split

METADATA_FILES: tuple[str, ...] = ("metadata.jsonl", "metadata.csv")


class ImageFolderWarning(UserWarning):
    """Rows or files of an image folder that were skipped (one warning per folder, with counts)."""


@dataclass(frozen=True)
class MetadataRow:
    file_name: str
    text: str
    line: int


class SkipLog:
    """Counts problems per reason and keeps the first example of each, for one summary line."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def add(self, reason: str, example: str) -> None:
        self.counts[reason] += 1
        self.examples.setdefault(reason, example)

    def summary(self) -> str:
        return "; ".join(f"{n} {reason} (e.g. {self.examples[reason]})" for reason, n in self.counts.items())


def _is_utf8(text: str) -> bool:
    """False for text decoded with ``surrogateescape`` from bytes that were not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def find_metadata(root: Path) -> Path:
    """The folder's one metadata file; a missing folder, none or both is an error."""
    if not root.is_dir():
        raise FileNotFoundError(f"imagefolder root {str(root)!r} does not exist or is not a directory")
    found = [root / name for name in METADATA_FILES if (root / name).is_file()]
    if len(found) != 1:
        problem = "has both" if found else "has neither"
        raise FileNotFoundError(
            f"imagefolder {str(root)!r} {problem} of {list(METADATA_FILES)}; it needs exactly one, with "
            f"'file_name' and caption columns (the Hugging Face imagefolder convention)"
        )
    return found[0]


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) pairs; malformed structure is an error naming file and line."""
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    if path.suffix == ".jsonl":
        for line, raw in enumerate(text.split("\n"), start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} line {line} is not valid JSON: {exc}") from exc
            if not isinstance(record, dict):
                raise ValueError(f"{path} line {line} must be a JSON object, got {type(record).__name__}")
            yield line, record
    else:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        for record in reader:
            yield reader.line_num, record


def check_inside_root(root: Path, file_name: str, where: str, option: str | None = "data.allow_outside_root") -> None:
    """Refuse a row whose file resolves outside ``root``; the message names the ``option`` that allows it."""
    try:
        inside = (root / file_name).resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError, ValueError):  # a NUL byte or a symlink loop: no file, counted as missing
        return
    if not inside:
        allow = f", or set {option}=true if you trust this metadata" if option else ""
        raise ValueError(f"{where}: file_name {file_name!r} lies outside the folder {str(root)!r}; "
                         f"move the file into the folder{allow}")


def read_metadata(
    root: Path, caption_column: str, skipped: SkipLog, allow_outside_root: bool = False
) -> tuple[list[MetadataRow], set[str]]:
    """Usable rows of the folder's metadata and every file name it lists.

    Rows with bad text or missing files go to ``skipped``; a row outside ``root`` is an error
    unless ``allow_outside_root``.
    """
    path = find_metadata(root)
    rows, listed = [], set()
    for line, record in _records(path):
        missing = [c for c in ("file_name", caption_column) if c not in record]
        if missing:
            raise ValueError(f"{path} line {line} lacks column(s) {missing}; it has {sorted(record)}")
        file_name, caption = record["file_name"], record[caption_column]
        for name, value in (("file_name", file_name), (caption_column, caption)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{path} line {line}: {name} must be a string, got {value!r}")
        listed.add(file_name or "")
        where = f"line {line}"
        if file_name and not allow_outside_root:
            check_inside_root(root, file_name, f"{path} {where}")
        if not _is_utf8(file_name or "") or not _is_utf8(caption or ""):
            skipped.add("non-UTF-8 text", where)
        elif not caption or not caption.strip():
            skipped.add("empty caption", f"{where} {file_name!r}")
        elif not file_name or not (root / file_name).is_file():
            skipped.add("missing file", f"{where} {file_name!r}")
        else:
            rows.append(MetadataRow(file_name, caption.strip(), line))
    if not listed:
        raise ValueError(f"{path} has no rows")
    return rows, listed


def _unlisted_images(root: Path, listed: set[str]) -> list[str]:
    """Image files under ``root`` that no metadata row names."""
    extensions = set(Image.registered_extensions())
    named = {(root / name).resolve() for name in listed}
    files = (p for p in sorted(root.rglob("*")) if p.suffix.lower() in extensions and p.is_file())
    return [str(p.relative_to(root)) for p in files if p.resolve() not in named]


class ImageFolderDataModule(CaptionedImageDataModule):
    """Captioned images from ``settings.root``; ``max_pixels`` refuses larger images from their header."""

    settings: ImageFolderSettings

    def __init__(self, settings: ImageFolderSettings) -> None:
        super().__init__(settings)
        self.root, self.fractions = Path(settings.root), settings.fractions
        self._loaded: tuple[torch.Tensor, list[MetadataRow]] | None = None
        self._shorter_sides: np.ndarray | None = None  # per loaded row, of its file

    def load(self) -> tuple[torch.Tensor, list[MetadataRow]]:
        """Decode every usable row once: uint8 images (N, 3, R, R) and their rows; warns once."""
        if self._loaded is None:
            skipped = SkipLog()
            candidates, listed = read_metadata(
                self.root, self.settings.caption_column, skipped, self.settings.allow_outside_root
            )
            images, rows, sides = [], [], []
            for row in candidates:
                try:
                    loaded = load_rgb(self.root / row.file_name, self.resolution, self.settings.max_pixels)
                    images.append(loaded.pixels)
                    sides.append(loaded.shorter_side)
                    rows.append(row)
                except UnusableImage as exc:
                    skipped.add(exc.reason, f"line {row.line} {row.file_name!r}: {exc.detail}")
            total = sum(skipped.counts.values()) + len(rows)
            notes = [f"skipped {total - len(rows)} of {total} rows: {skipped.summary()}"] if skipped.counts else []
            if not rows:
                raise ValueError(f"imagefolder {str(self.root)!r} has no usable images; {'; '.join(notes)}")
            unlisted = _unlisted_images(self.root, listed)
            if unlisted:
                notes.append(f"{len(unlisted)} image files have no metadata row (e.g. {unlisted[0]!r})")
            if notes:
                warnings.warn(f"imagefolder {str(self.root)!r}: {'; '.join(notes)}", ImageFolderWarning, stacklevel=2)
            self._loaded, self._shorter_sides = (torch.stack(images), rows), np.array(sides)
        return self._loaded

    def split_index(self, split: str) -> np.ndarray:
        _, rows = self.load()
        return hash_split([row.file_name for row in rows], self.fractions, split)

    def native_size(self, split: str) -> float:
        """The shorter side of the split's smallest original: larger sizes would upscale it."""
        self.load()
        return float(self._shorter_sides[self.split_index(split)].min())

    def build(self, split: str) -> TensorCaptionDataset:
        images, rows = self.load()
        index = self.split_index(split)
        fingerprint = {
            "dataset": "imagefolder",
            "root": str(self.root.resolve()),
            "split": split,
            "resolution": self.resolution,
            "fractions": self.fractions,
            "caption_column": self.settings.caption_column,
        }
        texts = [rows[i].text for i in index]
        return TensorCaptionDataset(images[torch.from_numpy(index)], texts, {}, fingerprint)
