"""Sample grids: upscaled to a readable cell, one captioned row per prompt (the cap for long prompt
files: tests/reliability/test_bad_input.py)."""

from __future__ import annotations

import numpy as np
import torch

from evaluation.grids import LINE, MIN_CELL, PADDING, SampleGrid, grid_image


def test_cells_are_upscaled_by_a_whole_factor_and_rows_are_captioned() -> None:
    images = torch.zeros(6, 3, 16, 16, dtype=torch.uint8)
    images[:, 0] = 200  # red squares
    plain = grid_image(SampleGrid(images, columns=3))
    scale = -(-MIN_CELL // 16)  # 6: the smallest whole factor that reaches MIN_CELL
    assert plain.size == (3 * (16 * scale + PADDING) + PADDING, 2 * (16 * scale + PADDING) + PADDING)
    pixels = np.asarray(plain)
    assert (pixels[PADDING : PADDING + 16 * scale, PADDING : PADDING + 16 * scale] == (200, 0, 0)).all()  # nearest

    captioned = grid_image(SampleGrid(images, ("a red square", "another red square"), columns=3, title="ddim, 20 steps"))
    assert captioned.height == plain.height + 2 * LINE + LINE + PADDING  # a line per row, one for the title
    text_band = np.asarray(captioned)[PADDING : LINE, :, :]
    assert (text_band < 128).any()  # something is written in the title line
