"""Image folders: every kind of bad input is an error or a counted warning, never a silent result."""

from __future__ import annotations

import io
import json
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mjexp.data.imagefolder import ImageFolderDataModule, ImageFolderWarning
from mjexp.data.pil_images import load_rgb
from mjexp.data.dataset_settings import ImageFolderSettings
from mjexp.data.splits import SPLITS

RED = (200, 30, 30)


def _save(path: Path, image: Image.Image, fmt: str = "PNG", **kwargs) -> Path:
    image.save(path, fmt, **kwargs)
    return path


def _rgb(path: Path, color=RED, size=(12, 10)) -> Path:
    return _save(path, Image.new("RGB", size, color))


def _folder(tmp_path: Path, rows: list[dict], good: int = 4) -> Path:
    """``good`` valid images plus ``rows``; metadata.jsonl lists all of them."""
    for i in range(good):
        _rgb(tmp_path / f"good_{i}.png")
    lines = [json.dumps({"file_name": f"good_{i}.png", "text": f"a red image {i}"}) for i in range(good)]
    lines += [json.dumps(row) for row in rows]
    (tmp_path / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def _module(root: Path, **kwargs) -> ImageFolderDataModule:
    return ImageFolderDataModule(ImageFolderSettings(root=str(root), **{
        "resolution": 8, "batch_size": 2, "judge_fraction": 0.0, "val_fraction": 0.0, "test_fraction": 0.0, **kwargs,
    }))  # fmt: skip


def _load_with_one_warning(module: ImageFolderDataModule) -> str:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module.load()
    ours = [w for w in caught if issubclass(w.category, ImageFolderWarning)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    return str(ours[0].message)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (PIL reads the size without decoding)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def _truncated(fmt: str) -> bytes:
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, fmt)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("corrupt.png", b"this is not an image at all", "unreadable"),
        ("zero.png", b"", "unreadable"),
        ("truncated.png", _truncated("PNG"), "unreadable"),
        ("truncated.jpg", _truncated("JPEG"), "unreadable"),
        ("bomb.png", _png_header_only(30000, 30000), "too large"),  # PIL's DecompressionBombError
        ("huge.png", _png_header_only(10000, 10000), "too large"),  # PIL would only warn
    ],
)
def test_bad_image_files_are_skipped_and_counted(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    (tmp_path / name).write_bytes(content)
    module = _module(_folder(tmp_path, [{"file_name": name, "text": "bad"}]))
    message = _load_with_one_warning(module)
    assert f"skipped 1 of 5 rows: 1 {reason}" in message and name in message
    assert len(module.dataset("train")) == 4


def test_images_above_max_pixels_are_refused_before_decoding(tmp_path: Path) -> None:
    _rgb(tmp_path / "big.png", size=(200, 100))
    module = _module(_folder(tmp_path, [{"file_name": "big.png", "text": "big"}]), max_pixels=10_000)
    assert "1 too large (e.g. line 5 'big.png': 200x100 pixels > max_pixels=10000)" in _load_with_one_warning(module)


def test_problems_of_several_kinds_make_one_warning_with_counts(tmp_path: Path) -> None:
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "corrupt.png").write_bytes(b"garbage")
    _rgb(tmp_path / "unlisted.png")
    rows = [
        {"file_name": "zero.png", "text": "a"},
        {"file_name": "corrupt.png", "text": "b"},
        {"file_name": "gone.png", "text": "c"},
        {"file_name": "good_0.png", "text": "   "},
        {"file_name": "good_1.png", "text": None},
    ]
    message = _load_with_one_warning(_module(_folder(tmp_path, rows)))
    assert "skipped 5 of 9 rows" in message
    assert "2 unreadable" in message and "1 missing file" in message and "2 empty caption" in message
    assert "'gone.png'" in message and "1 image files have no metadata row (e.g. 'unlisted.png')" in message


def test_non_utf8_captions_are_skipped_and_counted(tmp_path: Path) -> None:
    _folder(tmp_path, [])
    _rgb(tmp_path / "latin.png")
    with open(tmp_path / "metadata.jsonl", "ab") as f:
        f.write(b'{"file_name": "latin.png", "text": "caf\xe9 au lait"}\n')
    module = _module(tmp_path)
    assert "skipped 1 of 5 rows: 1 non-UTF-8 text (e.g. line 5)" in _load_with_one_warning(module)
    assert all("caf" not in t for t in module.dataset("train").texts)


def test_grayscale_rgba_16bit_and_palette_images_become_correct_rgb(tmp_path: Path) -> None:
    gray = _save(tmp_path / "gray.png", Image.new("L", (8, 8), 77))
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:, :4] = (10, 200, 10, 255)  # opaque green left half, transparent (black) right half
    rgba_path = _save(tmp_path / "rgba.png", Image.fromarray(rgba))
    deep = _save(tmp_path / "deep.png", Image.fromarray(np.full((8, 8), 32896, np.uint16)))
    palette = _save(tmp_path / "palette.gif", Image.new("RGB", (8, 8), (0, 0, 255)).convert("P"), "GIF")
    assert Image.open(deep).mode.startswith("I")  # it really is a 16-bit file
    assert load_rgb(gray, 8).pixels.unique().tolist() == [77]
    converted = load_rgb(rgba_path, 8).pixels
    assert converted[:, :, :3].flatten(1).unique(dim=1).T.tolist() == [[10, 200, 10]]
    assert converted[:, :, 5:].unique().tolist() == [255]  # transparency is white, not black
    assert load_rgb(deep, 8).pixels.unique().tolist() == [128]  # 32896 / 65535 * 255, not clipped to 255
    assert load_rgb(palette, 8).pixels[:, 0, 0].tolist() == [0, 0, 255]


def test_resize_centre_crop_and_exif_orientation(tmp_path: Path) -> None:
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, :10], wide[:, 10:20], wide[:, 20:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    image = load_rgb(_save(tmp_path / "wide.png", Image.fromarray(wide)), 5).pixels
    assert image.shape == (3, 5, 5) and image[:, 2, 2].tolist() == [0, 255, 0]  # the middle third
    halves = np.zeros((8, 8, 3), np.uint8)
    halves[:, :4] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 3  # orientation: rotated 180 degrees
    upright = load_rgb(_save(tmp_path / "rotated.jpg", Image.fromarray(halves), "JPEG", exif=exif, quality=95), 8).pixels
    assert upright[0, 4, 7] > 200 and upright[0, 4, 0] < 50  # red ends up on the right


def test_csv_metadata_and_custom_caption_column(tmp_path: Path) -> None:
    for i in range(3):
        _rgb(tmp_path / f"{i}.png")
    (tmp_path / "metadata.csv").write_text('file_name,caption\n0.png,"a red, square image"\n1.png,red\n2.png,crimson\n')
    module = _module(tmp_path, caption_column="caption")
    dataset = module.dataset("train")
    assert sorted(dataset.texts) == ["a red, square image", "crimson", "red"]
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (2, 3, 8, 8) and "attrs" not in batch
    assert module.attribute_values() == {}
    with pytest.raises(ValueError, match="no attribute vocabulary"):
        module.caption({"color": "red"})


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda root: None, "has neither of \\['metadata.jsonl', 'metadata.csv'\\]"),
        (lambda root: [(root / n).write_text("") for n in ("metadata.jsonl", "metadata.csv")], "has both"),
        (lambda root: (root / "metadata.jsonl").write_text("\n"), "has no rows"),
        (lambda root: (root / "metadata.jsonl").write_text('{"file_name": "a.png"\n'), "line 1 is not valid JSON"),
        (lambda root: (root / "metadata.jsonl").write_text('["a.png"]\n'), "line 1 must be a JSON object"),
        (lambda root: (root / "metadata.jsonl").write_text('{"file_name": "a.png"}\n'), r"lacks column\(s\) \['text'\]"),
        (lambda root: (root / "metadata.jsonl").write_text('{"file_name": "a.png", "text": 3}\n'), "text must be a string"),
        (lambda root: (root / "metadata.csv").write_text("name,text\na.png,x\n"), r"lacks column\(s\) \['file_name'\]"),
    ],
    ids=["empty", "both", "no-rows", "bad-json", "not-object", "no-text", "text-not-str", "csv-no-file-name"],
)
def test_folder_and_metadata_structure_problems_are_clear_errors(tmp_path: Path, setup, message: str) -> None:
    setup(tmp_path)
    with pytest.raises((FileNotFoundError, ValueError), match=message):
        _module(tmp_path).load()


def test_missing_folder_and_no_usable_image_are_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _module(tmp_path / "nowhere").load()
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "gone.png", "text": "x"}) + "\n")
    with pytest.raises(ValueError, match="has no usable images; skipped 1 of 1 rows: 1 missing file"):
        _module(tmp_path).load()


def test_a_folder_smaller_than_one_batch_trains_in_one_batch(tmp_path: Path) -> None:
    module = _module(_folder(tmp_path, [], good=3), batch_size=4)
    assert [len(batch["text"]) for batch in module.train_dataloader()] == [len(module.dataset("train"))]


def test_splits_are_disjoint_by_file_and_keep_every_caption_of_an_image(tmp_path: Path) -> None:
    rows = [{"file_name": f"good_{i}.png", "text": f"second caption {i}"} for i in range(40)]
    module = _module(_folder(tmp_path, rows, good=40), judge_fraction=0.2, val_fraction=0.2, test_fraction=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean folder warns about nothing
        texts = {split: module.dataset(split).texts for split in SPLITS}
    assert sum(map(len, texts.values())) == 80
    numbers = {split: {t.split()[-1] for t in ts} for split, ts in texts.items()}
    assert sum(map(len, numbers.values())) == 40  # each image in exactly one split...
    assert all(len(ts) == 2 * len(numbers[split]) for split, ts in texts.items())  # ...with both captions
    fingerprint = module.fingerprint("test")
    assert fingerprint["split"] == "test" and len(fingerprint["content_sha256"]) == 64


def test_native_size_is_the_splits_smallest_shorter_side(tmp_path: Path) -> None:
    """The size up to which a split exists without upscaling (patch FID's reference for a hires fix):
    per split, the smallest shorter side of its files; a module built at a larger resolution makes
    its images from the originals."""
    sizes = {f"{i}.png": (20 + 3 * i, 40 - 2 * i) for i in range(8)}  # shorter sides 20, 23, 26, 29, 28, 30, 28, 26
    rng = np.random.default_rng(0)
    for name, size in sizes.items():
        _save(tmp_path / name, Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)))
    (tmp_path / "metadata.jsonl").write_text("".join(json.dumps({"file_name": n, "text": n}) + "\n" for n in sizes))
    module = _module(tmp_path, test_fraction=0.5)
    for split in ("train", "test"):
        files = module.dataset(split).texts
        assert 0 < len(files) < len(sizes)
        assert module.native_size(split) == min(min(sizes[f]) for f in files)
        assert load_rgb(tmp_path / files[0], 8).shorter_side == min(sizes[files[0]])
    larger = _module(tmp_path, test_fraction=0.5, resolution=16).dataset("test")
    assert np.array_equal(larger.images[0].numpy(), load_rgb(tmp_path / larger.texts[0], 16).pixels.numpy())
