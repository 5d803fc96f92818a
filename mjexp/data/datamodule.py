"""What every dataset shares: the sample/batch contract, an in-memory dataset and the DataModule base.

Batch contract (docs/architecture.md, "Contracts"): ``{"image": float (B, 3, H, W) in [-1, 1], "text": list[str]}`` plus,
where the data knows them, ``"attrs": dict[str, list]`` (one list entry per image).

Small datasets: ``train`` uses ``drop_last=True`` (a ragged last batch would change the loss
scale and batch statistics), so a train split smaller than one batch would yield no batches at
all; such a loader uses the whole split as its batch instead (:func:`fitted_batch_size`; the run's
preflight, :mod:`mjexp.data.requirements`, says so and logs the value used). The other splits are
only evaluated, so they keep every image (``drop_last=False``) and may be smaller than a batch; an
empty split is an error.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from mjexp.data.captions import CaptionSchema
from mjexp.data.images import to_model_range
from mjexp.data.resumable import ResumableLoader, ResumableSampler
from mjexp.data.dataset_settings import DataSettings
from mjexp.data.splits import check_split

Sample = dict[str, Any]  # {"image": (3, H, W) float, "text": str, optional "attrs": {name: value}}


def fitted_batch_size(batch_size: int, split_size: int) -> int:
    """The batch size of a training loader (``drop_last``) over ``split_size`` items: the configured
    one, or the whole split when that is smaller."""
    return max(1, min(batch_size, split_size))


def recipe_loader(dataset: Dataset, batch_size: int, seed: int, train: bool) -> DataLoader:
    """The loader a component that trains itself (domain CLIP, autoencoder) reads a split with: for
    training, shuffled by ``seed`` with ``drop_last`` (the whole split when it is smaller than a
    batch); otherwise in order, every item."""
    if train:
        batch_size = fitted_batch_size(batch_size, len(dataset))
    generator = torch.Generator().manual_seed(seed) if train else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=train, drop_last=train, collate_fn=collate, generator=generator)


def collate(samples: Sequence[Sample]) -> dict[str, Any]:
    """Stack samples into the batch contract; attributes become one list per name."""
    batch: dict[str, Any] = {
        "image": torch.stack([s["image"] for s in samples]),
        "text": [s["text"] for s in samples],
    }
    if "attrs" in samples[0]:
        batch["attrs"] = {name: [s["attrs"][name] for s in samples] for name in samples[0]["attrs"]}
    return batch


class CaptionedDataset(Dataset):
    """A dataset of captioned images that can say what determines its content."""

    def fingerprint(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """JSON-able description of everything that determines the images, split included."""
        raise NotImplementedError


class TensorCaptionDataset(CaptionedDataset):
    """Images already decoded into one uint8 (N, 3, H, W) tensor, with captions and attributes."""

    def __init__(
        self,
        images: torch.Tensor,
        texts: Sequence[str],
        attrs: Mapping[str, Sequence[str]],
        fingerprint: Mapping[str, Any],
    ) -> None:
        if len(texts) != len(images) or any(len(v) != len(images) for v in attrs.values()):
            raise ValueError(f"{len(images)} images need as many captions and attribute values")
        self.images, self.texts = images.contiguous(), list(texts)
        self.attrs = {name: list(values) for name, values in attrs.items()}
        self._fingerprint = dict(fingerprint)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Sample:
        sample: Sample = {"image": to_model_range(self.images[index]), "text": self.texts[index]}
        if self.attrs:
            sample["attrs"] = {name: values[index] for name, values in self.attrs.items()}
        return sample

    def fingerprint(self) -> dict[str, Any]:
        """The given description plus a hash of the pixels and captions actually held."""
        if "content_sha256" not in self._fingerprint:
            digest = hashlib.sha256(self.images.numpy().tobytes())
            digest.update("\n".join(self.texts).encode("utf-8", "surrogateescape"))
            self._fingerprint["content_sha256"] = digest.hexdigest()
        return dict(self._fingerprint)


class CaptionedImageDataModule(L.LightningDataModule):
    """Base DataModule: subclasses implement :meth:`build` (one split) and set ``schema``; each
    takes its :mod:`mjexp.data.dataset_settings` (checked when they are made).

    ``dataset(split)`` serves any split, including ``judge``, which Lightning has no hook for.
    """

    schema: CaptionSchema | None = None  # attribute vocabulary + caption template, when known

    def __init__(self, settings: DataSettings) -> None:
        super().__init__()
        self.settings = settings
        self._datasets: dict[str, CaptionedDataset] = {}

    @property
    def resolution(self) -> int:
        return self.settings.resolution

    @property
    def batch_size(self) -> int:
        return self.settings.batch_size

    @property
    def num_workers(self) -> int:
        return self.settings.num_workers

    @property
    def seed(self) -> int:
        return self.settings.seed

    def build(self, split: str) -> CaptionedDataset:  # pragma: no cover - abstract
        raise NotImplementedError

    def native_size(self, split: str) -> float:
        """The largest square size at which every image of ``split`` exists without upscaling
        (``math.inf`` for data rendered at any size): a datamodule built at that ``resolution`` or
        below gives a reference for a hires fix's output (patch FID, mjexp.runs.eval_run.grid_evaluation). The data's own
        resolution is a reference in any case (it is what the model learned)."""
        return self.resolution

    def dataset(self, split: str) -> CaptionedDataset:
        """The (cached) dataset of ``split``; an empty split is an error."""
        if check_split(split) not in self._datasets:
            dataset = self.build(split)
            if len(dataset) == 0:
                raise ValueError(
                    f"{type(self).__name__}: split {split!r} is empty; give it a positive size or fraction"
                )
            self._datasets[split] = dataset
        return self._datasets[split]

    def setup(self, stage: str | None = None) -> None:
        """Build the splits a Lightning stage uses, so problems surface before any training step."""
        stages = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ()}
        for split in stages.get(stage or "", ("train", "val", "test")):
            self.dataset(split)

    def dataloader(
        self, split: str, shuffle: bool = False, drop_last: bool = False, dataset: Dataset | None = None
    ) -> DataLoader:
        """A loader over any split (or over ``dataset``, a view of it such as its latents);
        ``shuffle`` gives a :class:`ResumableLoader` seeded by ``seed``.

        Every loader gets a seeded generator: starting an epoch then draws its worker seeds from
        it rather than from the global RNG, so validating never shifts the random stream that
        training draws its noise from (and a resumed run matches an uninterrupted one).
        """
        dataset = self.dataset(split) if dataset is None else dataset
        settings = dict(
            batch_size=fitted_batch_size(self.batch_size, len(dataset)) if drop_last else self.batch_size,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),  # page-locked batches copy to the GPU asynchronously
            collate_fn=collate,
            generator=torch.Generator().manual_seed(self.seed),
        )
        if shuffle:
            return ResumableLoader(dataset, sampler=ResumableSampler(dataset, self.seed), **settings)
        return DataLoader(dataset, **settings)

    def train_dataloader(self) -> DataLoader:
        return self.dataloader("train", shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self.dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.dataloader("test")

    def attribute_values(self) -> dict[str, list[str]]:
        """Attribute vocabulary (empty when the data has no ground-truth attributes)."""
        return self.schema.attribute_values() if self.schema else {}

    def caption(self, attrs: Mapping[str, str]) -> str:
        """The caption this dataset writes for ``attrs``."""
        if self.schema is None:
            raise ValueError(f"{type(self).__name__} has no attribute vocabulary, so it cannot caption attributes")
        return self.schema.caption(attrs)

    def fingerprint(self, split: str) -> dict[str, Any]:
        """What determines the images of ``split`` (hash it to key cached reference statistics)."""
        return self.dataset(split).fingerprint()
