"""Tiny synthetic image-caption data for the text tests: coloured squares in one of four quadrants."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

COLORS = {"red": (1.0, -1.0, -1.0), "green": (-1.0, 1.0, -1.0), "blue": (-1.0, -1.0, 1.0), "white": (1.0, 1.0, 1.0)}
PLACES = {"top left": (0, 0), "top right": (0, 1), "bottom left": (1, 0), "bottom right": (1, 1)}


class QuadrantSquares(Dataset):
    """``n`` 16 px images in [-1, 1]: a jittered 5 px square of one colour in one quadrant."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        color = torch.randint(len(COLORS), (n,), generator=g)
        place = torch.randint(len(PLACES), (n,), generator=g)
        jitter = torch.randint(0, 3, (n, 2), generator=g)
        self.images = torch.full((n, 3, 16, 16), -1.0)
        self.texts = []
        for i in range(n):
            c, p = list(COLORS)[color[i]], list(PLACES)[place[i]]
            row, col = PLACES[p]
            y, x = 8 * row + 1 + jitter[i, 0], 8 * col + 1 + jitter[i, 1]
            self.images[i, :, y : y + 5, x : x + 5] = torch.tensor(COLORS[c])[:, None, None]
            self.texts.append(f"a {c} square in the {p}")

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "text": self.texts[i]}


def collate(samples: list[dict]) -> dict:
    return {"image": torch.stack([s["image"] for s in samples]), "text": [s["text"] for s in samples]}


@pytest.fixture(scope="session")
def quadrant_loaders() -> dict[str, DataLoader]:
    """``train`` (shuffled, seeded) and ``val`` loaders over disjointly seeded synthetic images."""
    train = DataLoader(
        QuadrantSquares(1024, seed=0), batch_size=128, shuffle=True, drop_last=True, collate_fn=collate,
        generator=torch.Generator().manual_seed(0),
    )
    return {"train": train, "val": DataLoader(QuadrantSquares(256, seed=1), batch_size=128, collate_fn=collate)}
