"""Bad input gives a clear one-line error or a counted warning, never a silent wrong result.

(Checkpoints of another U-Net config: test_checkpoints.py.)
"""

from __future__ import annotations

import io
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from reliability_helpers import REPO, TINY, run_cli
from evaluation.grids import LINE, MIN_CELL, PADDING
from mjexp.runs.components import build_datamodule
from mjexp.config import ConfigError, register_configs, validate
from mjexp.data.imagefolder import ImageFolderWarning
from mjexp.data.dataset_settings import ShapesSettings
from mjexp.data.shapes import ShapesDataModule
from mjexp.runs.sample_run import GRID_PROMPTS, write_grid
from mjexp.text.tiny import TinyTextEncoder


def compose_config(name: str, overrides: list[str]):  # noqa: ANN201
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(name, overrides=overrides)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=abc", r"Value 'abc' of type 'str' could not be converted to Float\s+full_key: optim\.lr"),
        ("unet.attention_levels=oops", r"full_key: unet\.attention_levels"),
    ],
)
def test_wrong_types_name_the_full_key(override: str, message: str) -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose_config("train", [*TINY, "output_dir=unused", override])
    # What the CLI prints: Hydra's message, then its cause's.
    assert re.search(message, f"{error.value}\n{error.value.__cause__}")


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("train", ["trainer.max_step=5"], "unknown key trainer.max_step (did you mean trainer.max_steps?)"),
        # Hydra's own hint for the line above: it used to compose and run with the typo ignored.
        ("train", ["+trainer.max_step=5"], "unknown key trainer.max_step (did you mean trainer.max_steps?)"),
        ("train", ["+eval.judge.stepz=3"], "unknown key eval.judge.stepz (did you mean eval.judge.steps?)"),
        ("train", ["+seeed=1"], "unknown key seeed (did you mean seed?)"),
        ("train", ["data=imagefolder", "data.root=x", "data.rot=y"], "unknown key data.rot (did you mean data.root?)"),
        ("train", ["data.root=x"], "unknown key data.root"),  # shapes has no root: keys follow the chosen data
        ("train", ["eval.grid.guidance.scal=[1,3]"], "guidance.scal (did you mean guidance.scale?) are not sweepable"),
        ("eval", ["ckpt=x", "eval.samples_per_promt=3"], "did you mean eval.samples_per_prompt?"),
        ("sample", ["ckpt=x", "prompt=a", "+nn=3"], "unknown key nn (did you mean n?)"),
    ],
)
def test_unknown_keys_name_the_closest_valid_key(name: str, overrides: list[str], message: str) -> None:
    extra = [*TINY] if name == "train" else []
    cfg = compose_config(name, [*extra, "output_dir=unused", *overrides])
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    assert message in str(error.value)


def test_config_typo_is_rejected_before_any_work(tmp_path: Path) -> None:
    done = run_cli("mjexp.train", *TINY, "+trainer.max_step=5", cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert "error: invalid config:\n  unknown key trainer.max_step (did you mean trainer.max_steps?)" in done.stderr
    assert sorted(tmp_path.iterdir()) == []  # no outputs/, no mlflow.db


def test_out_of_range_values_are_named_before_any_work() -> None:
    cfg = compose_config(
        "train",
        [*TINY, "output_dir=unused", "optim.lr=-1", "sampler.name=ddmi", "data.caption_noise=1.5", "sampler.noise=pink",
         "data.batch_size=0", "schedule.num_train_timesteps=1", "text_encoder.caption_noise=-0.5",
         "trainer.sample_every_n_steps=-1"],
    )
    with pytest.raises(ConfigError, match=r"sampler\.name='ddmi' is not one of ddpm, ddim") as error:
        validate(cfg)
    assert "optim.lr must be > 0, got -1.0" in str(error.value)
    assert "data.batch_size=0 is outside [1, inf]" in str(error.value)
    assert "data.caption_noise=1.5 is outside [0.0, 1.0]" in str(error.value)
    assert "schedule.num_train_timesteps must be >= 2, got 1" in str(error.value)
    assert "text_encoder.caption_noise=-0.5 is outside [0.0, 1.0]" in str(error.value)
    assert "sampler.noise='pink' is not one of independent, brownian" in str(error.value)
    assert "trainer.sample_every_n_steps=-1 is outside [0, inf]" in str(error.value)


def test_a_super_resolution_training_refuses_sample_grids_naming_why() -> None:
    cfg = compose_config("train", [*TINY, "output_dir=unused", "+experiment=train_sr", "trainer.sample_every_n_steps=2"])
    with pytest.raises(ConfigError, match="sr.enabled=true with trainer.sample_every_n_steps: a super-resolution model "
                                          "samples only inside a base model's hires fix"):
        validate(cfg)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("~eval.grid.guidance", "eval.grid is empty: give at least one setting"),
        ("eval.grid.guidance.scale=[]", "eval.grid.guidance.scale is an empty list"),
    ],
)
def test_empty_eval_grid_is_an_error(override: str, message: str) -> None:
    cfg = compose_config("eval", ["output_dir=unused", "ckpt=unused", override])
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


def test_dataset_smaller_than_one_batch_trains_on_the_whole_split() -> None:
    data = ShapesDataModule(ShapesSettings(train_size=8, batch_size=16, val_size=4, test_size=4, judge_size=4))
    assert [len(batch["text"]) for batch in data.train_dataloader()] == [8]


def test_prompt_longer_than_the_context_is_truncated_with_a_warning() -> None:
    encoder = TinyTextEncoder(width=16, heads=2, max_length=8)
    long = "a red circle in the top left next to a blue square in the bottom right"
    with pytest.warns(UserWarning, match=r"1 prompt\(s\) longer than the tiny context of 8 tokens were truncated"):
        embedding = encoder.encode([long, "a red circle"])
    assert embedding.tokens.shape[1] == 8
    assert embedding.mask[0].all()  # the long prompt fills the whole context


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _noise_png() -> bytes:
    return _png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)))


def _rgba_png() -> bytes:
    pixels = np.zeros((8, 8, 4), np.uint8)
    pixels[..., 1] = 200  # green where opaque; the alpha channel is 0 (transparent) everywhere but row 0
    pixels[0, :, 3] = 255
    return _png(Image.fromarray(pixels))


def _huge_png() -> bytes:
    """A 10000x10000 PNG header (PIL reads the size without decoding; 100 M pixels > max_pixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 10000, 10000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def _text_bomb_png() -> bytes:
    """A small PNG whose zTXt chunk inflates to 50 MB (PIL refuses text chunks past 1 MB)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    inflated = b"".join(compressor.compress(bytes(1 << 20)) for _ in range(50)) + compressor.flush()
    png = _noise_png()
    return png[:33] + chunk(b"zTXt", b"Comment\0\0" + inflated) + png[33:]  # right after IHDR


# name: (file bytes or None for no file, caption bytes, expected skip reason or None if the image is kept)
BAD_ROWS = {
    "corrupt": (b"GIF89a then garbage", b"x", "1 unreadable"),
    "truncated": (_noise_png()[:200], b"x", "1 unreadable"),
    "zero-byte": (b"", b"x", "1 unreadable"),
    "huge": (_huge_png(), b"x", "1 too large"),
    "zTXt bomb": (_text_bomb_png(), b"x", "1 unreadable"),
    "missing file": (None, b"x", "1 missing file"),
    "non-UTF-8 caption": (_noise_png(), b"caf\xe9", "1 non-UTF-8 text"),
    "empty caption": (_noise_png(), b"  ", "1 empty caption"),
    "grayscale": (_png(Image.new("L", (8, 8), 77)), b"x", None),
    "RGBA": (_rgba_png(), b"x", None),
    "16-bit": (_png(Image.fromarray(np.full((8, 8), 32896, np.uint16))), b"x", None),
}


@pytest.mark.parametrize("kind", list(BAD_ROWS))
def test_imagefolder_bad_rows_are_counted_or_converted(tmp_path: Path, kind: str) -> None:
    """Through the config a user writes (data=imagefolder): skipped with one counted warning, or
    converted correctly. (Every variant of each kind: tests/unit/data/test_data_imagefolder.py.)"""
    content, caption, reason = BAD_ROWS[kind]
    lines = []
    for i in range(4):
        Image.new("RGB", (8, 8), (200, 30, 30)).save(tmp_path / f"good{i}.png")
        lines.append(b'{"file_name": "good%d.png", "text": "a red square"}' % i)
    if content is not None:
        (tmp_path / "odd.png").write_bytes(content)
    lines.append(b'{"file_name": "odd.png", "text": "%s"}' % caption)
    (tmp_path / "metadata.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    cfg = compose_config("train", ["output_dir=unused", "data=imagefolder", f"data.root={tmp_path}",
                                   "data.resolution=8", "data.batch_size=2", "data.judge_fraction=0",
                                   "data.val_fraction=0", "data.test_fraction=0"])
    data = build_datamodule(cfg.data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train = data.dataset("train")
    messages = [str(w.message) for w in caught if issubclass(w.category, ImageFolderWarning)]
    if reason is not None:
        assert len(messages) == 1 and f"skipped 1 of 5 rows: {reason}" in messages[0] and "line 5" in messages[0]
        if reason in ("1 unreadable", "1 too large"):
            assert "line 5 'odd.png'" in messages[0]  # the file is named
        assert len(train) == 4
        return
    assert messages == [] and len(train) == 5
    odd = next(i for i, name in enumerate(train.texts) if name == "x")
    pixels = train.images[odd]
    expected = {"grayscale": [77, 77, 77], "RGBA": [255, 255, 255], "16-bit": [128, 128, 128]}[kind]
    assert pixels[:, -1, -1].tolist() == expected  # not clipped to white (16-bit), not black (alpha)


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
    height = Image.open(tmp_path / "grid.png").height  # 100k prompts once made an 18 x 1,700,001 px grid
    assert height < (GRID_PROMPTS + 1) * (LINE + MIN_CELL + 2 * PADDING) + LINE
