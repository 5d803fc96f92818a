"""CIFAR-10 through torchvision, with prompts "a photo of a {label}" (CLIP's zero-shot template).

Splits: the official training set is cut into train/judge/val by a seeded permutation; ``test`` is
the official test set. With ``download=True`` torchvision fetches and md5-checks the archive when
online; offline, or with ``download=False`` and files missing, the error says which files to put
where. An archive placed at ``<root>/cifar-10-python.tar.gz`` is md5-checked and extracted
without network access when ``download=True``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import check_integrity

from mjexp.data.captions import CaptionSchema
from mjexp.data.datamodule import CaptionedImageDataModule, TensorCaptionDataset
from mjexp.data.images import resize_square
from mjexp.data.dataset_settings import Cifar10Settings
from mjexp.data.splits import permutation_split

CIFAR_SIZE = 32  # px, the dataset's images

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR10_SCHEMA = CaptionSchema("a photo of a {label}", {"label": CIFAR10_CLASSES})
_FILES = {name: md5 for name, md5 in CIFAR10.train_list + CIFAR10.test_list}
_FILES[CIFAR10.meta["filename"]] = CIFAR10.meta["md5"]


def _placement_hint(root: Path) -> str:
    folder = root / CIFAR10.base_folder
    return (
        f"download {CIFAR10.url} (md5 {CIFAR10.tgz_md5}) and extract it into {root} so that {folder} "
        f"holds {sorted(_FILES)}, or place the archive at {root / CIFAR10.filename} and set download=true"
    )


def cifar10_arrays(root: str | Path, train: bool, download: bool) -> tuple[torch.Tensor, np.ndarray]:
    """uint8 images (N, 3, 32, 32) and labels of the official train or test set."""
    root = Path(root)
    folder = root / CIFAR10.base_folder
    try:
        dataset = CIFAR10(str(root), train=train, download=download)
    except (OSError, RuntimeError) as exc:  # network failure, or files missing / failing md5
        missing = sorted(name for name in _FILES if not (folder / name).is_file())
        if missing:
            reason = f"download failed: {exc}" if download else "download=false"
            raise FileNotFoundError(
                f"CIFAR-10 files {missing} are missing from {folder} ({reason}); {_placement_hint(root)}"
            ) from exc
        corrupt = sorted(name for name, md5 in _FILES.items() if not check_integrity(str(folder / name), md5))
        message = f"CIFAR-10 files {corrupt} in {folder} fail their md5 check; {_placement_hint(root)}"
        raise RuntimeError(message) from exc
    images = torch.from_numpy(np.ascontiguousarray(dataset.data.transpose(0, 3, 1, 2)))
    return images, np.asarray(dataset.targets)


class CIFAR10DataModule(CaptionedImageDataModule):
    """CIFAR-10 under ``root`` (``<root>/cifar-10-batches-py``), resized to the resolution."""

    schema = CIFAR10_SCHEMA

    settings: Cifar10Settings

    def __init__(self, settings: Cifar10Settings = Cifar10Settings()) -> None:
        super().__init__(settings)
        self.root, self.fractions = Path(settings.root), settings.fractions  # test: the official test set

    def prepare_data(self) -> None:
        """Download once (Lightning calls this on one process only)."""
        if self.settings.download:
            cifar10_arrays(self.root, train=False, download=True)

    def native_size(self, split: str) -> float:
        """CIFAR-10's images are 32 px."""
        return CIFAR_SIZE

    def build(self, split: str) -> TensorCaptionDataset:
        images, labels = cifar10_arrays(self.root, train=split != "test", download=self.settings.download)
        if split != "test":
            rows = torch.from_numpy(permutation_split(len(images), self.fractions, self.seed, split))
            images, labels = images[rows], labels[rows.numpy()]
        words = [CIFAR10_CLASSES[label] for label in labels]
        fingerprint = {
            "dataset": "cifar10",
            "split": split,
            "resolution": self.resolution,
            "seed": self.seed,
            "fractions": self.fractions,
        }
        captions = [CIFAR10_SCHEMA.caption({"label": w}) for w in words]
        return TensorCaptionDataset(resize_square(images, self.resolution), captions, {"label": words}, fingerprint)
