"""Checkpoint files: atomic writes, bad files named and skipped, EMA state always present and separate."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import load_file

from reliability_helpers import train
from mjexp.files.checkpoints import CheckpointError, SafeCheckpointIO, atomic_write, load_torch_file
from mjexp.runs.models import load_model
from mjexp.runs.resume import continued_folder, open_resume


def test_atomic_write_goes_through_a_synced_temp_file_next_to_the_target(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "checkpoints" / "last.ckpt"
    renames, synced = [], []
    real_replace, real_fsync = os.replace, os.fsync

    def replace(src, dst):  # noqa: ANN001
        renames.append((Path(src), Path(dst), Path(src).read_bytes()))
        real_replace(src, dst)

    def fsync(fd):  # noqa: ANN001
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "fsync", fsync)
    atomic_write(target, lambda tmp: tmp.write_bytes(b"new weights"))

    [(src, dst, content)] = renames
    assert dst == target and src.parent == target.parent and src != target
    assert content == b"new weights"  # complete before the rename
    assert synced[0] == str(src)  # the data was fsynced before the rename ...
    assert str(target.parent) in synced[1:]  # ... and the folder entry after it
    assert target.read_bytes() == b"new weights" and sorted(target.parent.iterdir()) == [target]


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "last.ckpt"
    io = SafeCheckpointIO()
    io.save_checkpoint({"step": torch.tensor(1)}, target)

    def dies_halfway(obj, path):  # noqa: ANN001
        Path(path).write_bytes(b"PK\x03\x04 half a zip")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"step": torch.tensor(2)}, target)
    assert io.load_checkpoint(target)["step"] == 1
    assert sorted(tmp_path.iterdir()) == [target]  # no temp file left behind


def _break(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "zero-byte":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:  # corrupted: bytes flipped in the middle of the archive
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 4096]) + data[middle + 4096 :])


@pytest.mark.parametrize("how", ["zero-byte", "truncated", "corrupted"])
def test_bad_last_checkpoint_is_named_and_resume_falls_back(trained: Path, tmp_path: Path, how: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained / "checkpoints", run / "checkpoints")
    last = run / "checkpoints" / "last.ckpt"
    _break(last, how)

    with pytest.raises(CheckpointError, match=str(last)):
        load_torch_file(last)
    requested = torch.load(last.with_name("step=000004.ckpt"), weights_only=True)["mjexp_config"]
    assert continued_folder("last", tmp_path / "new-run", own_folder_only=False, requeued=False) == run
    with pytest.warns(UserWarning, match=rf"{last}.*resuming from .*step=000004\.ckpt"):
        resume = open_resume("last", run, requested)
    assert resume.checkpoint == run / "checkpoints" / "step=000004.ckpt"
    assert resume.output_dir == run
    with pytest.raises(CheckpointError, match=str(last)):  # an explicit path is never swapped for another
        open_resume(str(last), run, requested)


def test_no_readable_checkpoint_is_one_error_listing_each_file(trained: Path, tmp_path: Path) -> None:
    folder = tmp_path / "run" / "checkpoints"
    shutil.copytree(trained / "checkpoints", folder)
    for path in folder.glob("*.ckpt"):
        path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="no readable checkpoint") as error:
        open_resume("last", folder.parent, {})
    for path in folder.glob("*.ckpt"):
        assert str(path) in str(error.value)


def test_checkpoint_holds_raw_and_ema_weights_side_by_side(trained: Path) -> None:
    """The checkpoint is never written with EMA weights swapped into the trained network."""
    checkpoint = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    state = checkpoint["state_dict"]
    raw = load_file(str(trained / "export" / "raw.safetensors"))
    ema = load_file(str(trained / "export" / "ema.safetensors"))
    for key, value in raw.items():
        assert torch.equal(state[key], value), key
    for key, value in ema.items():
        source = key.replace("unet.", "ema_unet.averaged.", 1).replace("text_encoder.", "ema_text_encoder.averaged.", 1)
        assert torch.equal(state[source], value), key
    assert any(not torch.equal(raw[k], ema[k]) for k in raw if raw[k].is_floating_point())
    assert int(state["ema_unet.num_updates"]) == checkpoint["global_step"] == 4


def copied_checkpoint(trained: Path, tmp_path: Path, edit: Callable[[dict], None] | None = None) -> Path:
    """The trained run's last checkpoint, optionally edited, in a run folder of this test's own."""
    checkpoint = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    if edit is not None:
        edit(checkpoint)
    path = tmp_path / "old-run" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    torch.save(checkpoint, path)
    return path


def test_resuming_without_ema_state_is_an_error(trained: Path, tmp_path: Path) -> None:
    def drop_ema(checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("ema_")}

    path = copied_checkpoint(trained, tmp_path, drop_ema)
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} has no EMA state"):
        train(tmp_path / "new-run", f"ckpt_path={path}", "trainer.max_steps=6", "tracking.enabled=false")


def test_resuming_with_another_unet_config_names_the_keys(trained: Path, tmp_path: Path) -> None:
    path = copied_checkpoint(trained, tmp_path)
    expected = rf"checkpoint {path} belongs to a run with another config \(unet\.channels: checkpoint 16 vs requested 8\)"
    with pytest.raises(CheckpointError, match=expected):
        train(tmp_path / "new-run", f"ckpt_path={path}", "unet.channels=8", "trainer.max_steps=6", "tracking.enabled=false")


def test_resuming_weights_that_do_not_fit_their_config_names_the_mismatched_shapes(trained: Path, tmp_path: Path) -> None:
    def narrower(checkpoint: dict) -> None:
        checkpoint["mjexp_config"]["unet"]["channels"] = 8

    path = copied_checkpoint(trained, tmp_path, narrower)
    expected = rf"checkpoint {path} does not fit this model \(shape mismatches \['unet\.time_mlp\.0\.weight: checkpoint \(64, 16\) vs model \(32, 8\)'"
    with pytest.raises(CheckpointError, match=expected):
        train(tmp_path / "new-run", f"ckpt_path={path}", "unet.channels=8", "trainer.max_steps=6", "tracking.enabled=false")


def test_sampling_from_a_checkpoint_of_another_unet_config_names_the_keys(trained: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    shutil.copytree(trained / "export", export)
    config = export / "config.yaml"
    config.write_text(config.read_text().replace("num_res_blocks: 1", "num_res_blocks: 2"))
    with pytest.raises(CheckpointError, match=rf"{export} does not fit this U-Net configuration \(missing keys \['"):
        load_model(export)

    def narrower(checkpoint: dict) -> None:
        checkpoint["mjexp_config"]["unet"]["channels"] = 8

    path = copied_checkpoint(trained, tmp_path, narrower)
    with pytest.raises(CheckpointError, match=rf"{path} does not fit this U-Net configuration \(shape mismatches"):
        load_model(path)


def _break_safetensors(path: Path, how: str) -> None:
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "huge header length":
        path.write_bytes(struct.pack("<Q", 2**62) + data[8:])
    else:  # huge tensor sizes: the header claims 1e12 floats in a file of kilobytes
        header = json.loads(data[8 : 8 + size])
        name = next(k for k in header if k != "__metadata__")
        header[name].update(shape=[10**12], data_offsets=[0, 4 * 10**12])
        text = json.dumps(header).encode()
        path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + size :])


@pytest.mark.parametrize("how", ["truncated", "huge header length", "huge tensor sizes"])
def test_a_broken_safetensors_file_is_one_line_naming_it(trained: Path, tmp_path: Path, how: str) -> None:
    export = tmp_path / "export"
    shutil.copytree(trained / "export", export)
    _break_safetensors(export / "ema.safetensors", how)
    with pytest.raises(CheckpointError) as error:
        load_model(export)
    message = str(error.value)
    assert message.startswith(f"cannot load weights {export / 'ema.safetensors'}: it is truncated or corrupted (")
    assert "\n" not in message
