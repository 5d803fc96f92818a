"""The batch contract and the DataModule base: loaders, small or empty splits, unknown splits."""

from __future__ import annotations

import pytest
import torch

from mjexp.data.datamodule import collate, fitted_batch_size
from mjexp.data.digits import DigitsDataModule
from mjexp.data.dataset_settings import DigitsSettings, ShapesSettings
from mjexp.data.shapes import ShapesDataModule


def _small_shapes(**kwargs) -> ShapesDataModule:
    sizes = {"train_size": 40, "judge_size": 10, "val_size": 7, "test_size": 9}
    return ShapesDataModule(ShapesSettings(**{**sizes, "batch_size": 8, **kwargs}))


@pytest.mark.parametrize(
    "module",
    [
        _small_shapes(), _small_shapes(two_objects=True, resolution=24),
        DigitsDataModule(DigitsSettings(batch_size=8, resolution=20)),
    ],
    ids=["shapes", "shapes-two-objects", "digits"],
)
def test_batches_keep_the_contract(module) -> None:
    module.setup("fit")
    for loader in (module.train_dataloader(), module.val_dataloader(), module.test_dataloader(), module.dataloader("judge")):
        batch = next(iter(loader))
        images, n = batch["image"], len(batch["text"])
        assert images.dtype == torch.float32 and images.shape == (n, 3, module.resolution, module.resolution)
        assert images.min() >= -1 and images.max() <= 1 and images.min() < 0 < images.max()
        assert all(isinstance(t, str) and t for t in batch["text"])
        assert set(batch["attrs"]) == set(module.attribute_values())
        for i, text in enumerate(batch["text"]):
            assert module.caption({k: v[i] for k, v in batch["attrs"].items()}) == text


def test_train_loader_drops_the_ragged_batch_and_shuffles_reproducibly() -> None:
    module = _small_shapes()
    batches = list(module.train_dataloader())
    assert len(batches) == 5 and all(len(b["text"]) == 8 for b in batches)
    again = list(_small_shapes().train_dataloader())
    assert [b["text"] for b in batches] == [b["text"] for b in again]
    assert [t for b in batches for t in b["text"]] != [module.dataset("train")[i]["text"] for i in range(40)]
    val = list(module.val_dataloader())
    assert [len(b["text"]) for b in val] == [7]  # evaluation splits keep every image


def test_train_split_smaller_than_a_batch_is_one_batch_of_the_whole_split() -> None:
    module = _small_shapes(train_size=5)
    assert [len(batch["text"]) for batch in module.train_dataloader()] == [5]
    assert fitted_batch_size(8, 5) == 5 and fitted_batch_size(8, 20) == 8


def test_empty_and_unknown_splits_are_errors() -> None:
    with pytest.raises(ValueError, match="split 'val' is empty"):
        _small_shapes(val_size=0).setup("fit")
    with pytest.raises(ValueError, match=r"unknown split 'dev'; allowed: \['train', 'judge', 'val', 'test'\]"):
        _small_shapes().dataset("dev")


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"resolution": 0}, {"num_workers": -1}])
def test_bad_loader_settings_are_errors(kwargs) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ShapesDataModule(ShapesSettings(**kwargs))


def test_collate_stacks_images_and_lists_attributes() -> None:
    samples = [{"image": torch.full((3, 2, 2), float(i)), "text": f"t{i}", "attrs": {"a": f"v{i}"}} for i in range(3)]
    batch = collate(samples)
    assert batch["image"][:, 0, 0, 0].tolist() == [0, 1, 2]
    assert batch["text"] == ["t0", "t1", "t2"] and batch["attrs"] == {"a": ["v0", "v1", "v2"]}
    assert "attrs" not in collate([{"image": torch.zeros(3, 2, 2), "text": "x"}])
