"""Sample grids a person can read: small images upscaled (nearest, so pixels stay pixels) to a
readable cell, one row per prompt with the prompt written above it, and the setting as a title.

A 16 px sample shown at 16 px is a smudge, and a grid without captions cannot be checked against
its prompts; every grid mjexp writes (``mjexp.sample``'s ``grid.png``, a setting's ``grid.png``,
the grids of ``report.html``) goes through here.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from evaluation.quantisation import to_uint8

MIN_CELL = 96  # px: cells are upscaled by a whole factor until at least this wide
GRID_COLUMNS = 8  # images per row of a grid without its own layout
PADDING = 2
FONT_SIZE = 13
LINE = FONT_SIZE + 5  # px of one text line


@dataclass(frozen=True)
class SampleGrid:
    """``images`` laid out ``columns`` to a row; ``row_labels`` (one per row, may be empty) are
    written above their rows and ``title`` above everything."""

    images: torch.Tensor  # (N, 3, H, W), float in [-1, 1] or uint8
    row_labels: Sequence[str] = ()
    columns: int = GRID_COLUMNS
    title: str = ""


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except (OSError, TypeError, ImportError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int, font: ImageFont.ImageFont) -> str:
    """``text`` shortened with an ellipsis so that it fits ``width`` px on one line."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def grid_image(grid: SampleGrid, min_cell: int = MIN_CELL) -> Image.Image:
    """The grid as one RGB image on white."""
    pixels, _ = to_uint8(grid.images, "grid images")
    scale = max(1, math.ceil(min_cell / pixels.shape[-1]))
    pixels = F.interpolate(pixels.float(), scale_factor=scale, mode="nearest").to(torch.uint8)
    n, _, height, width = pixels.shape
    columns = max(1, min(grid.columns, n))
    rows = math.ceil(n / columns)
    labelled = any(grid.row_labels)
    row_height = height + PADDING + (LINE if labelled else 0)
    top = LINE + PADDING if grid.title else 0
    canvas = Image.new("RGB", (columns * (width + PADDING) + PADDING, top + rows * row_height + PADDING), "white")
    draw, font = ImageDraw.Draw(canvas), _font()
    text_width = canvas.width - 2 * PADDING
    if grid.title:
        draw.text((PADDING, PADDING), _fit(draw, grid.title, text_width, font), fill="black", font=font)
    for index in range(n):
        row, column = divmod(index, columns)
        y = top + row * row_height + PADDING
        if column == 0 and row < len(grid.row_labels) and grid.row_labels[row]:
            draw.text((PADDING, y), _fit(draw, grid.row_labels[row], text_width, font), fill=(60, 60, 60), font=font)
        y += LINE if labelled else 0
        image = Image.fromarray(pixels[index].permute(1, 2, 0).numpy())
        canvas.paste(image, (PADDING + column * (width + PADDING), y))
    return canvas


def grid_png(grid: SampleGrid | torch.Tensor, min_cell: int = MIN_CELL) -> bytes:
    """PNG bytes of a grid (a bare image tensor: 8 to a row, no labels)."""
    buffer = io.BytesIO()
    grid_image(grid if isinstance(grid, SampleGrid) else SampleGrid(grid), min_cell).save(buffer, format="PNG")
    return buffer.getvalue()
