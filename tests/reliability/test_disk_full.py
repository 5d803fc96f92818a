"""A full disk: one error naming the file and the space left at every write site of a run
(checkpoint, export, images); the tracking journal never stops a run; after freeing space the run
resumes and MLflow has every step. Each site with a simulated ENOSPC (as the libraries report it),
then the whole story on a real, small tmpfs where the machine lets the suite mount one."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from reliability_helpers import TINY, cli_env, sqlite_uri
from mjexp.files import disk as disk_space
from mjexp.runs import generation
from mjexp.files.checkpoints import SafeCheckpointIO
from mjexp.files.disk import DiskFullError, append_durably
from mjexp.runs.models import export_model, load_model
from mjexp.runs.generation import ManifestWriter
from mjexp.tracking import journal as journal_module
from mjexp.tracking.journal import Journal
from mjexp.tracking.mlflow import Tracker

FULL = "no space left to write {path} ("  # then "<free> free of <total> on that filesystem; ..."


def no_space(*args, **kwargs):  # noqa: ANN002, ANN003
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_checkpoint_on_a_full_disk_names_the_file_and_keeps_the_previous_one(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "checkpoints" / "last.ckpt"
    io = SafeCheckpointIO()
    io.save_checkpoint({"step": torch.tensor(1)}, target)

    def short_write(obj, path):  # noqa: ANN001 - what torch.save says when the disk fills mid-file
        Path(path).write_bytes(b"PK\x03\x04 half a zip")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(torch, "save", short_write)
    with pytest.raises(DiskFullError) as error:
        io.save_checkpoint({"step": torch.tensor(2)}, target)
    message = str(error.value)
    assert message.startswith(FULL.format(path=target)) and " free of " in message
    assert message.endswith("free space, then resume with ckpt_path=last") and "unexpected pos" in message
    assert io.load_checkpoint(target)["step"] == 1
    assert sorted(target.parent.iterdir()) == [target]  # no temp file left behind


def test_export_on_a_full_disk_names_the_file(trained: Path, tmp_path: Path, monkeypatch) -> None:
    loaded = load_model(trained / "export")
    module = SimpleNamespace(sampling_networks=lambda weights: (loaded.unet, loaded.text_encoder))

    def safetensors_full(state, filename, metadata=None):  # noqa: ANN001 - safetensors' own words
        raise Exception("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr("mjexp.runs.models.save_file", safetensors_full)
    with pytest.raises(DiskFullError, match=FULL.format(path=tmp_path / "export" / "ema.safetensors").replace("(", r"\(")):
        export_model(module, loaded.config, tmp_path / "export", None)


def test_images_on_a_full_disk_name_the_folder_and_leave_the_manifest_whole(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "generated"
    (folder / "images").mkdir(parents=True)
    writer = ManifestWriter(folder, {"model": "m", "resolution": 16, "seed": 0, "settings": {}})
    trainer = SimpleNamespace(world_size=1, global_rank=0, strategy=SimpleNamespace(reduce_boolean_decision=lambda d, all: d))
    batch = {"prompt": ["a", "b"], "prompt_index": torch.tensor([0, 1]), "sample_index": torch.tensor([0, 0]),
             "images": torch.zeros(2, 3, 16, 16), "nfe": 1, "network_evals": 1}
    writer.write_on_batch_end(trainer, None, batch, None, None, 0)
    manifest = (folder / "manifest.jsonl").read_bytes()

    monkeypatch.setattr(Image.Image, "save", no_space)
    batch = {**batch, "prompt_index": torch.tensor([2, 3])}
    with pytest.raises(DiskFullError, match=FULL.format(path=folder).replace("(", r"\(")):
        writer.write_on_batch_end(trainer, None, batch, None, None, 0)
    assert (folder / "manifest.jsonl").read_bytes() == manifest
    assert set(generation.read_manifest(folder)) == {(0, 0), (1, 0)}


def test_an_append_cut_short_by_a_full_disk_is_cut_back(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "manifest.jsonl"
    append_durably(path, b'{"row": 1}\n')
    real_write = os.write

    def half_then_full(fd, data):  # noqa: ANN001 - a write that fills the disk half way
        if len(data) > 4:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(disk_space.os, "write", half_then_full)
    with pytest.raises(OSError):
        append_durably(path, b'{"row": 2}\n')
    assert path.read_bytes() == b'{"row": 1}\n'


def test_a_full_disk_under_the_journal_never_stops_the_run(tmp_path: Path, monkeypatch) -> None:
    """Journal appends fail for a while (tracked steps 1 to 3): one warning, no error; MLflow still
    gets every call, the run's end included; once there is room the journal catches up, in order."""
    real_append = journal_module.append_durably
    full = {"now": False}

    def sometimes_full(path, data):  # noqa: ANN001
        if full["now"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_append(path, data)

    monkeypatch.setattr(journal_module, "append_durably", sometimes_full)
    journal = Journal(tmp_path / "run" / "tracking_journal.jsonl")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = Tracker(sqlite_uri(tmp_path), "default", "run", journal)
        for step in range(6):
            full["now"] = 1 <= step <= 3
            tracker.log_metrics({"train/loss": 1.0 / (step + 1)}, step)
        full["now"] = True
        tracker.finish("FINISHED")
    [warning] = [str(w.message) for w in caught if "tracking journal" in str(w.message)]
    assert f"cannot write the tracking journal {journal.path} (OSError: [Errno 28]" in warning

    client = MlflowClient(sqlite_uri(tmp_path))
    assert client.get_run(tracker.run_id).info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(tracker.run_id, "train/loss")) == list(range(6))
    full["now"] = False
    journal.record("note", "parent")  # the next write brings the journal up to date
    events = list(journal.events())
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert sorted(e["step"] for e in events if e["event"] == "metrics") == list(range(6))
    assert [e["status"] for e in events if e["event"] == "finish"] == ["FINISHED"]


# ---- a real full disk ------------------------------------------------------------------------
DRIVER = r'''
"""Inside a mount namespace with a small tmpfs at DISK: train, fill the disk mid-run, free it, resume."""
import json, os, subprocess, sys, time
disk, out, uri, result = sys.argv[1:5]
command = [sys.executable, "-m", "mjexp.train", *sys.argv[5:], f"hydra.run.dir={out}", f"tracking.tracking_uri={uri}"]
journal = os.path.join(out, "tracking_journal.jsonl")

def trained_steps():
    try:
        return [json.loads(line)["step"] for line in open(journal) if '"train/loss"' in line]
    except (OSError, ValueError):
        return []

with open(result + ".first.log", "w") as log:
    first = subprocess.Popen(command, stdout=log, stderr=log)
    while max(trained_steps(), default=-1) < int(os.environ["FILL_AT_STEP"]) and first.poll() is None:
        time.sleep(0.01)
    filler = os.path.join(disk, "filler")
    with open(filler, "wb") as f:  # fill the disk as another process would
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass
    first_code = first.wait()
run_id = json.load(open(os.path.join(out, "run.json")))["mlflow_run_id"]
from mlflow.tracking import MlflowClient
stopped = MlflowClient(uri).get_run(run_id)
os.remove(filler)
second = subprocess.run(command + ["ckpt_path=last"], capture_output=True, text=True)
json.dump({"first": first_code, "second": second.returncode, "second_output": second.stdout + second.stderr,
           "run_id": run_id, "status": stopped.info.status, "error": stopped.data.tags.get("error")}, open(result, "w"))
'''


def can_mount_a_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-Urm", "sh", "-c", "mount -t tmpfs -o size=1m none /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not can_mount_a_tmpfs(), reason="cannot mount a tmpfs here (needs unshare -Urm); the simulated-ENOSPC tests above cover each write site")
def test_a_disk_filled_mid_training_then_freed(tmp_path: Path) -> None:
    """The run's folder on a 96 MiB tmpfs; another process fills it after the step-8 checkpoint.
    Training carries on past the journal's failures (8 steps of lines outgrow the page the journal
    file had room in), stops at the step-16 checkpoint with one error naming it (exit 2), the MLflow
    run (elsewhere) FAILED with that error. Space freed, ``ckpt_path=last`` finishes the run: the
    same MLflow run FINISHED, its error cleared, train/loss at every step."""
    disk, result = tmp_path / "disk", tmp_path / "result.json"
    disk.mkdir()
    (tmp_path / "driver.py").write_text(DRIVER)
    driver = [sys.executable, str(tmp_path / "driver.py"), str(disk), str(disk / "run"), sqlite_uri(tmp_path),
              str(result), *TINY, "trainer.max_steps=16", "trainer.checkpoint_every_n_steps=8"]
    script = f"mount -t tmpfs -o size=96m none {disk} && exec " + " ".join(f"'{arg}'" for arg in driver)
    subprocess.run(["unshare", "-Urm", "sh", "-c", script], cwd=tmp_path, env={**cli_env(), "FILL_AT_STEP": "8"},
                   check=True, timeout=900)

    outcome = json.loads(result.read_text())
    first_log = Path(str(result) + ".first.log").read_text()
    assert outcome["first"] == 2, first_log[-3000:]
    [error] = [line for line in first_log.splitlines() if line.startswith("error: ")]
    # The step-16 checkpoint (or, when the filler leaves it room, last.ckpt after it).
    assert error.startswith(f"error: no space left to write {disk / 'run' / 'checkpoints'}/"), error
    assert " free of 96.0 MiB on that filesystem" in error and error.endswith("free space, then resume with ckpt_path=last")
    assert f"cannot write the tracking journal {disk / 'run' / 'tracking_journal.jsonl'}" in first_log
    assert outcome["status"] == "FAILED" and outcome["error"].startswith("mjexp.files.disk.DiskFullError: no space left")
    assert outcome["second"] == 0, outcome["second_output"][-3000:]

    client = MlflowClient(sqlite_uri(tmp_path))
    run = client.get_run(outcome["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["error"] == ""
    assert {m.step for m in client.get_metric_history(run.info.run_id, "train/loss")} == set(range(16))
