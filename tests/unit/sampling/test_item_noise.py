"""Matched noise: an item's noise never depends on the batch it is generated in."""

from __future__ import annotations

import pytest
import torch

from mjexp.sampling.denoiser import Denoiser
from mjexp.sampling.guidance import Guidance
from mjexp.sampling.noise import ItemNoise
from mjexp.sampling.samplers import SamplerSettings, sample
from sampling_helpers import ToyNetwork, linear_schedule

SHAPE = (3, 4, 4)
ALL_ITEMS = [(i, j) for i in range(4) for j in range(2)]  # 8 items


def rows_by_item(noise: ItemNoise, draw: torch.Tensor) -> dict[tuple[int, int], torch.Tensor]:
    return dict(zip(noise.items, draw))


@pytest.mark.parametrize("slot", ["initial", 0, 7])
def test_same_item_same_noise_in_any_batch(slot: str | int) -> None:
    def draw(items: list[tuple[int, int]]) -> dict[tuple[int, int], torch.Tensor]:
        noise = ItemNoise(seed=11, items=tuple(items), shape=SHAPE)
        return rows_by_item(noise, noise.initial() if slot == "initial" else noise.step(slot))  # type: ignore[arg-type]

    full = draw(ALL_ITEMS)
    assert len({tuple(v.flatten().tolist()[:4]) for v in full.values()}) == len(ALL_ITEMS)  # all distinct
    batches = [ALL_ITEMS[i : i + 1] for i in range(8)] + [ALL_ITEMS[i : i + 3] for i in range(0, 8, 3)]
    batches.append(list(reversed(ALL_ITEMS)))
    batches.append(ALL_ITEMS[5:] + ALL_ITEMS[:5])  # another process's shard order
    for batch in batches:
        for item, value in draw(batch).items():
            assert torch.equal(value, full[item]), f"item {item} changed in batch {batch}"


def test_streams_are_separate() -> None:
    noise = ItemNoise(seed=11, items=((0, 0),), shape=SHAPE)
    draws = [noise.initial(), noise.step(0), noise.step(1), noise.at_stage(1, SHAPE).initial()]
    draws.append(ItemNoise(seed=12, items=((0, 0),), shape=SHAPE).initial())
    draws.append(ItemNoise(seed=11, items=((0, 1),), shape=SHAPE).initial())
    draws.append(ItemNoise(seed=11, items=((1, 0),), shape=SHAPE).initial())
    for a in range(len(draws)):
        for b in range(a):
            assert not torch.equal(draws[a], draws[b]), (a, b)
    assert torch.equal(noise.step(1), noise.step(1))  # and reproducible


def test_draws_are_standard_normal() -> None:
    noise = ItemNoise.for_prompts(0, range(50), 20, (16,))
    x = noise.initial().flatten().double()  # 16,000 values
    se = 1 / len(x) ** 0.5
    assert abs(float(x.mean())) < 4 * se and abs(float(x.var()) - 1) < 4 * 2**0.5 * se


def test_for_prompts_orders_rows_prompt_major() -> None:
    noise = ItemNoise.for_prompts(3, [5, 2], 3, SHAPE, dtype=torch.float64)
    assert noise.items == ((5, 0), (5, 1), (5, 2), (2, 0), (2, 1), (2, 2))
    assert noise.initial().shape == (6, *SHAPE) and noise.initial().dtype == torch.float64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": -1}, "must be >= 0"),
        ({"items": ()}, "at least one item"),
        ({"items": ((0, -2),)}, "must be >= 0"),
    ],
)
def test_invalid_noise_is_rejected(kwargs: dict, message: str) -> None:
    args = {"seed": 0, "items": ((0, 0),), "shape": SHAPE, **kwargs}
    with pytest.raises(ValueError, match=message):
        ItemNoise(**args)
    with pytest.raises(ValueError, match="step index"):
        ItemNoise(0, ((0, 0),), SHAPE).step(-1)


def test_images_do_not_depend_on_the_batch() -> None:
    """End to end with an ancestral sampler: item (2, 1) alone or inside a batch of 3."""
    schedule = linear_schedule()
    denoiser = Denoiser(ToyNetwork("v"), schedule)  # type: ignore[arg-type]
    settings = SamplerSettings("euler_ancestral", 8)

    def image_of(item: tuple[int, int], batch: tuple[tuple[int, int], ...]) -> torch.Tensor:
        noise = ItemNoise(seed=5, items=batch, shape=SHAPE)
        return sample(denoiser, noise, {}, sampler=settings, guidance=Guidance(scale=1.0)).images[batch.index(item)]

    alone = image_of((2, 1), ((2, 1),))
    # Bitwise-equal noise; the network itself may round differently per batch size.
    torch.testing.assert_close(image_of((2, 1), ((0, 0), (2, 1), (7, 3))), alone, rtol=0, atol=1e-6)
    assert not torch.allclose(image_of((2, 0), ((2, 0),)), alone)
