"""The two pieces of exact resume that Lightning does not provide: the train loader's position
inside a shuffled epoch, and the global RNG states; both survive a ``weights_only`` checkpoint."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch

from mjexp.data.dataset_settings import ShapesSettings
from mjexp.data.shapes import ShapesDataModule
from mjexp.diffusion import random_state


def weights_only_round_trip(obj: object) -> object:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def texts(batches: list[dict]) -> list[list[str]]:
    return [batch["text"] for batch in batches]


def shapes() -> ShapesDataModule:
    return ShapesDataModule(ShapesSettings(train_size=40, val_size=4, test_size=4, judge_size=4, batch_size=8, seed=3))


def test_train_loader_resumes_mid_epoch_with_the_same_order() -> None:
    loader = shapes().train_dataloader()  # 5 batches per epoch
    epoch0 = list(loader)
    loader.sampler.set_epoch(1)  # what Lightning does at each epoch start
    iterator = iter(loader)
    head = [next(iterator) for _ in range(2)]  # epoch 1, two batches in
    state = weights_only_round_trip(loader.state_dict())
    assert state == {"epoch": 1, "batches_done": 2}
    rest = list(iterator)

    resumed = shapes().train_dataloader()
    resumed.load_state_dict(state)
    assert texts(list(resumed)) == texts(rest)
    assert texts(head + rest) != texts(epoch0)  # a new order each epoch ...
    fresh = shapes().train_dataloader()
    fresh.sampler.set_epoch(1)
    assert texts(list(fresh)) == texts(head + rest)  # ... given by (seed, epoch) alone


def test_train_loader_saved_after_an_epochs_last_batch_resumes_at_the_next_epoch() -> None:
    loader = shapes().train_dataloader()
    list(loader)
    resumed = shapes().train_dataloader()
    resumed.load_state_dict(loader.state_dict())  # {"epoch": 0, "batches_done": 5}
    expected = shapes().train_dataloader()
    expected.sampler.set_epoch(1)
    assert resumed.sampler.epoch == 1 and texts(list(resumed)) == texts(list(expected))


def test_rng_states_round_trip_through_a_weights_only_checkpoint() -> None:
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    state = weights_only_round_trip(random_state.capture())
    expected = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    random_state.restore(state)
    again = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_rng_state_round_trips_too() -> None:
    torch.cuda.manual_seed_all(1)
    torch.cuda.init()
    state = weights_only_round_trip(random_state.capture())
    assert "cuda" in state
    expected = torch.rand(4, device="cuda")
    torch.cuda.manual_seed_all(9)
    random_state.restore(state)
    assert torch.equal(torch.rand(4, device="cuda"), expected)
