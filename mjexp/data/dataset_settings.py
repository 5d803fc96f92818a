"""What a config of each data set sets: fields, defaults and allowed ranges, written once.

The config's ``data`` group (``mjexp.config.schema``) is derived from these classes and built back
into them (``mjexp.config.domain.build``); each DataModule takes its settings, so the Python API's
defaults are the commands'. Each class's ``problems`` lists every out-of-range field, naming its
config key; construction raises them all at once (start-up validation reports them beside the rest).
Kept apart from the DataModules so that the config layer reads them without importing torchvision
or scikit-learn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar

from mjexp.data.pil_images import PIL_MAX_PIXELS
from mjexp.data.splits import split_fractions


def outside(key: str, value: float, low: float, high: float = math.inf) -> list[str]:
    """``[message]`` when ``value`` lies outside ``[low, high]``, else ``[]``."""
    return [] if low <= value <= high else [f"{key}={value} is outside [{low}, {high}]"]


def caption_noise_problems(key: str, rate: float) -> list[str]:
    """A caption-noise rate is a probability (``data.caption_noise``, and a ShapesDataset's own argument)."""
    return outside(key, rate, 0.0, 1.0)


def raised(check: Callable[[], object]) -> list[str]:
    """The message of the ValueError ``check()`` raises, as a list of problems (empty if none)."""
    try:
        check()
    except ValueError as error:
        return [str(error)]
    return []


@dataclass(frozen=True, kw_only=True)
class DataSettings:
    """What every data set has: the image size, how batches are loaded, and the seed of its splits."""

    resolution: int = 16
    batch_size: int = 32  # per image, 1800 steps of 32 taught the default model more than 1500 of 64 (docs/results/2026-12-04-demo-in-ten-minutes.md)
    num_workers: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))

    def problems(self) -> list[str]:
        return [
            *outside("data.resolution", self.resolution, 1),
            *outside("data.batch_size", self.batch_size, 1),
            *outside("data.num_workers", self.num_workers, 0),
        ]


@dataclass(frozen=True, kw_only=True)
class ShapesSettings(DataSettings):
    """Rendered shapes (:mod:`mjexp.data.shapes`): split sizes, vocabulary (``None``: the
    renderer's defaults), layout, combinations kept out of ``train`` and caption noise (the
    probability that a ``train`` caption misnames one attribute)."""

    train_size: int = 20000
    judge_size: int = 10000
    val_size: int = 256
    test_size: int = 1000
    two_objects: bool = False
    colors: tuple[str, ...] | None = None
    shapes: tuple[str, ...] | None = None
    with_size: bool = False
    holdout: tuple[dict[str, str], ...] = ()
    caption_noise: float = 0.0

    def problems(self) -> list[str]:
        return [*super().problems(), *caption_noise_problems("data.caption_noise", self.caption_noise)]


class SplitByFraction:
    """A data set cut into train/judge/val/test by the fraction of each held-out split (its
    subclass's fields); train gets the rest."""

    judge_fraction: float
    val_fraction: float
    test_fraction: float

    @property
    def fractions(self) -> dict[str, float]:
        return split_fractions(self.judge_fraction, self.val_fraction, self.test_fraction, key_prefix="data.")

    def problems(self) -> list[str]:
        return [*super().problems(), *raised(lambda: self.fractions)]


@dataclass(frozen=True, kw_only=True)
class DigitsSettings(SplitByFraction, DataSettings):
    """scikit-learn's digits (:mod:`mjexp.data.digits`), split by fraction (train gets the rest)."""

    judge_fraction: float = 0.2
    val_fraction: float = 0.05
    test_fraction: float = 0.15


@dataclass(frozen=True, kw_only=True)
class ImageFolderSettings(SplitByFraction, DataSettings):
    """A captioned image folder (:mod:`mjexp.data.imagefolder`): ``max_pixels`` refuses larger
    images from their header (decompression bombs); ``allow_outside_root`` lets metadata rows name
    files outside ``root`` (absolute, ``..``, symlinks)."""

    root: str
    resolution: int = 64
    judge_fraction: float = 0.1
    val_fraction: float = 0.05
    test_fraction: float = 0.1
    caption_column: str = "text"
    max_pixels: int = PIL_MAX_PIXELS
    allow_outside_root: bool = False


@dataclass(frozen=True, kw_only=True)
class Cifar10Settings(SplitByFraction, DataSettings):
    """CIFAR-10 (:mod:`mjexp.data.cifar`) under ``root``; its official test set is ``test``, the
    training set is cut into train/judge/val."""

    resolution: int = 32
    root: str = "data/cifar10"
    download: bool = True
    judge_fraction: float = 0.2
    val_fraction: float = 0.02
    test_fraction: ClassVar[float] = 0.0  # not a setting: test is the official test set


DATA_SETTINGS: dict[str, type[DataSettings]] = {
    "shapes": ShapesSettings,
    "digits": DigitsSettings,
    "imagefolder": ImageFolderSettings,
    "cifar10": Cifar10Settings,
}
"""The data sets a config can name (``data.name``), with their settings."""
