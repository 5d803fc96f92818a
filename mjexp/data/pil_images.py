"""Load one image file of any common kind as a square uint8 RGB tensor, or say why it is unusable.

Conversions that PIL's plain ``convert("RGB")`` gets silently wrong are done explicitly:
- 16-bit greyscale (modes ``I;16*`` and ``I``) is rescaled from 0..65535 (``convert`` clips at 255,
  turning most images white);
- transparency (RGBA, LA, PA, palette/RGB with a transparent colour) is composited over white
  (``convert`` drops alpha and exposes whatever colour the transparent pixels hold);
- the EXIF orientation is applied (phone photos are otherwise sideways).
Images with more than ``max_pixels`` pixels are refused from their header, before decoding; JPEGs
are decoded at a reduced scale (``draft``) when they are much larger than the target.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

PIL_MAX_PIXELS = 89_478_485  # PIL's decompression-bomb warning threshold (Image.MAX_IMAGE_PIXELS)
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


class UnusableImage(Exception):
    """An image that is skipped: ``reason`` is the counted category, ``detail`` the specifics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB version of ``image`` (see the module docstring for the non-obvious cases)."""
    if image.mode in _SIXTEEN_BIT_MODES:
        grey = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        image = Image.fromarray(((grey * 255 + 32767) // 65535).astype(np.uint8))
    elif image.mode == "F":
        raise UnusableImage("unsupported mode", "32-bit float pixels have no agreed range")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


class LoadedImage(NamedTuple):
    pixels: torch.Tensor  # uint8 (3, R, R)
    shorter_side: int  # of the file: the largest square size it gives without upscaling


def load_rgb(path: Path, resolution: int, max_pixels: int = PIL_MAX_PIXELS) -> LoadedImage:
    """uint8 (3, R, R): resized so the shorter side is R (bicubic, antialiased), centre-cropped."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we apply our own cap
            image = Image.open(path)
    except FileNotFoundError as exc:
        raise UnusableImage("missing file", str(exc)) from exc
    except Image.DecompressionBombError as exc:
        raise UnusableImage("too large", str(exc)) from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:  # ValueError: a text chunk inflating too far
        raise UnusableImage("unreadable", str(exc)) from exc
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise UnusableImage("too large", f"{width}x{height} pixels > max_pixels={max_pixels}")
        image.draft("RGB", (resolution, resolution))
        try:
            image.load()
            image = ImageOps.exif_transpose(image)
            rgb = ImageOps.fit(to_rgb(image), (resolution, resolution), Image.Resampling.BICUBIC)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated or corrupt data
            raise UnusableImage("unreadable", str(exc)) from exc
    pixels = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).contiguous()
    return LoadedImage(pixels, min(width, height))
