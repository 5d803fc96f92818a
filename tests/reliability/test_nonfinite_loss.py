"""NaN/inf loss: a clear error naming the step, or a skipped step when configured; never a NaN checkpoint.

A batch of NaN images at a known position poisons exactly one training step.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from reliability_helpers import train_config
from mjexp.runs.components import build_text_encoder
from mjexp.data.datamodule import collate
from mjexp.diffusion.training_module import NonFiniteLossError
from mjexp.tracking.journal import Journal
from mjexp.tracking.lightning import SafeMLFlowLogger
from mjexp.tracking.mlflow import Tracker
from mjexp.runs.train_run import build_module, build_trainer

BATCH = 4
BAD_STEP = 3  # the 4th optimizer step sees the NaN batch


class PoisonedData(L.LightningDataModule):
    """Random images in [-1, 1]; train batch ``BAD_STEP`` is all NaN."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        images = torch.rand(steps * BATCH, 3, 16, 16, generator=g) * 2 - 1
        images[BAD_STEP * BATCH : (BAD_STEP + 1) * BATCH] = float("nan")
        self.train_items = [{"image": image, "text": "a red circle"} for image in images]
        self.val_items = self.train_items[:BATCH]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_items, batch_size=BATCH, collate_fn=collate)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_items, batch_size=BATCH, collate_fn=collate)


def fit(out: Path, policy: str, steps: int = 6) -> tuple[L.Trainer, L.LightningModule, Journal]:
    cfg = train_config(out, f"diffusion.nonfinite_loss={policy}", f"trainer.max_steps={steps}",
                       "trainer.checkpoint_every_n_steps=2", "trainer.val_check_interval=100")
    journal = Journal(out / "tracking_journal.jsonl")
    tracker = Tracker("sqlite:///unused.db", "nonfinite", "test", journal, enabled=False)
    module = build_module(cfg, build_text_encoder(cfg.text_encoder), {})
    trainer = build_trainer(cfg, out, SafeMLFlowLogger(tracker))
    trainer.fit(module, datamodule=PoisonedData(steps))
    return trainer, module, journal


def finite_checkpoint(path: Path) -> dict:
    checkpoint = torch.load(path, weights_only=True)
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())
    return checkpoint


def test_nan_loss_stops_training_naming_the_step(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError, match=rf"non-finite training loss \(nan\) at global step {BAD_STEP}; "
                       r"set diffusion.nonfinite_loss=skip"):
        fit(tmp_path, "error")
    assert finite_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 2


def test_nan_loss_step_is_skipped_when_configured(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    trainer, module, journal = fit(tmp_path, "skip")
    assert f"non-finite training loss (nan) at global step {BAD_STEP}; step skipped" in capsys.readouterr().out
    assert module.skipped_steps == 1
    logged = {e["step"]: e["metrics"] for e in journal.events() if e["event"] == "metrics" and "train/loss" in e["metrics"]}
    assert [logged[step]["train/skipped_steps"] for step in sorted(logged)] == [0, 0, 0, 1, 1, 1]
    losses = torch.tensor([logged[step]["train/loss"] for step in sorted(logged)])
    assert losses.isnan().tolist() == [step == BAD_STEP for step in range(6)]  # not the previous step's value
    # The skipped step changed nothing: the EMA counted only real updates, and weights stayed finite.
    checkpoint = finite_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    # The final step's checkpoint exists although it ends an epoch with no validation after it.
    assert checkpoint["global_step"] == trainer.global_step == 6
    assert int(checkpoint["state_dict"]["ema_unet.num_updates"]) == 6 - 1
    assert checkpoint["mjexp_skipped_steps"] == 1

    # A checkpoint with non-finite weights is refused and the good one on disk stays as it was.
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    with torch.no_grad():
        next(module.unet.parameters()).view(-1)[0] = float("inf")
    with pytest.raises(NonFiniteLossError, match="refusing to save a checkpoint .* non-finite weights in \\['unet\\."):
        trainer.save_checkpoint(last)
    assert last.read_bytes() == before
