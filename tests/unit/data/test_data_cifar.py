"""CIFAR-10: the offline message says what to place where; a tiny fake copy loads end to end.

Nothing here touches the network: downloads are either off or replaced by a failing stub.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torchvision.datasets.cifar as tv_cifar

from mjexp.data.cifar import CIFAR10_CLASSES, CIFAR10DataModule
from mjexp.data.dataset_settings import Cifar10Settings
from mjexp.data.splits import SPLITS

BATCHES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]


def _fake_cifar(root: Path, per_batch: int = 20) -> None:
    """CIFAR's python format: pickled dicts with uint8 rows of 3x32x32 (channel-major) pixels."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b, name in enumerate(BATCHES):
        labels = [(b + i) % 10 for i in range(per_batch)]
        # every pixel of image i holds its label * 20 in red, its batch in green, i in blue
        data = np.zeros((per_batch, 3, 32, 32), np.uint8)
        data[:, 0], data[:, 1] = (np.array(labels) * 20)[:, None, None], b
        data[:, 2] = np.arange(per_batch)[:, None, None]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data.reshape(per_batch, -1), "labels": labels}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CIFAR10_CLASSES)}, f)


def test_offline_without_files_names_the_files_the_folder_and_the_archive(tmp_path: Path) -> None:
    module = CIFAR10DataModule(Cifar10Settings(root=str(tmp_path), download=False))
    with pytest.raises(FileNotFoundError) as info:
        module.dataset("train")
    message = str(info.value)
    assert "\n" not in message
    assert f"missing from {tmp_path / 'cifar-10-batches-py'}" in message and "download=false" in message
    assert "'data_batch_1'" in message and "'batches.meta'" in message and "'test_batch'" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    assert "c58f30108f718f92721af3b95e74349a" in message and str(tmp_path / "cifar-10-python.tar.gz") in message


def test_a_failed_download_gives_the_same_instructions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    with pytest.raises(FileNotFoundError, match=r"download failed: <urlopen error no network>.*md5 c58f30"):
        CIFAR10DataModule(Cifar10Settings(root=str(tmp_path), download=True)).prepare_data()


def test_corrupt_files_are_named(tmp_path: Path) -> None:
    _fake_cifar(tmp_path)  # real md5 sums: every fake file fails them
    with pytest.raises(RuntimeError, match=r"files \['batches.meta', 'data_batch_1'.*fail their md5 check"):
        CIFAR10DataModule(Cifar10Settings(root=str(tmp_path), download=False)).dataset("test")


def test_fake_cifar_loads_into_the_batch_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cifar(tmp_path)
    # our fake files cannot match the real md5 sums; accept any existing file instead
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    module = CIFAR10DataModule(Cifar10Settings(root=str(tmp_path), resolution=16, download=False, batch_size=4,
                               judge_fraction=0.2, val_fraction=0.1))  # fmt: skip
    sizes = {split: len(module.dataset(split)) for split in SPLITS}
    assert sizes == {"train": 70, "judge": 20, "val": 10, "test": 20}
    test = module.dataset("test")
    assert test.images.shape == (20, 3, 16, 16)
    assert (test.images[:, 1] == 5).all()  # the test split is test_batch (batch index 5)
    for image, label, text in zip(test.images, test.attrs["label"], test.texts):
        assert image[0, 0, 0] == CIFAR10_CLASSES.index(label) * 20
        assert text == f"a photo of a {label}"
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["image"].min() >= -1 and batch["image"].max() <= 1
    assert set(batch["attrs"]) == {"label"} and batch["text"][0] == f"a photo of a {batch['attrs']['label'][0]}"
    train_ids = {tuple(im[1:, 0, 0].tolist()) for split in ("train", "judge", "val") for im in module.dataset(split).images}
    assert len(train_ids) == 100  # train/judge/val partition the official training set
