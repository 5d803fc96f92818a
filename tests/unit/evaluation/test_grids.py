"""Sample grids: upscaled to a readable cell, one captioned row per prompt, capped for long prompt files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from evaluation.grids import LINE, MIN_CELL, PADDING, SampleGrid, grid_image
from mjexp.inference import GRID_PROMPTS, write_grid


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


def test_a_long_prompt_file_gives_a_grid_of_the_first_prompts(tmp_path: Path) -> None:
    n_prompts = GRID_PROMPTS + 8
    rows = []
    (tmp_path / "images").mkdir()
    for i in range(n_prompts):
        name = f"images/p{i:05d}_s000.png"
        Image.fromarray(np.full((8, 8, 3), i, dtype=np.uint8)).save(tmp_path / name)
        rows.append({"file": name, "prompt_index": i, "sample_index": 0})
    shown = write_grid(tmp_path, rows, [f"prompt {i}" for i in range(n_prompts)], 1, "title")
    assert shown == GRID_PROMPTS
    height = Image.open(tmp_path / "grid.png").height
    assert height < (GRID_PROMPTS + 1) * (LINE + MIN_CELL + 2 * PADDING) + LINE
