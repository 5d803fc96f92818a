"""Training checkpoints: every ``trainer.checkpoint_every_n_steps`` steps, and at the current step
when a stop signal arrives (:mod:`mjexp.runs.signals`).

Lightning writes a step's checkpoint at the step's batch end, before it logs the step's metrics: a
run killed in between and resumed from that checkpoint never logs that step. The step's metrics
are therefore sent before its checkpoint is written (SafeMLFlowLogger drops Lightning's repeat).
A name already taken is overwritten (atomically), never versioned as ``-v1``: the newest
checkpoint of a step is the one to resume from.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from mjexp.runs import signals


class StepCheckpoint(ModelCheckpoint):
    """``step=NNNNNN.ckpt`` (the newest two) and ``last.ckpt``; see the module doc."""

    def __init__(self, dirpath: Path, every_n_steps: int) -> None:
        super().__init__(
            dirpath=dirpath,
            filename="step={step:06d}",
            auto_insert_metric_name=False,
            every_n_train_steps=every_n_steps,
            save_last=True,
            save_top_k=2,
            monitor="step",
            mode="max",
            # Save when the step is due. Otherwise Lightning defers a save due at an epoch's last batch
            # to a validation that may never run at that step, losing that (possibly final) checkpoint.
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        signals.take_over()  # from the SIGTERM handler Lightning installed for this fit

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Every rank stops at the same step: a signal may reach the ranks at different batches.
        stop = trainer.strategy.reduce_boolean_decision(signals.requested() is not None, all=False)
        every = self._every_n_train_steps
        if stop or (every > 0 and trainer.global_step % every == 0):
            trainer._logger_connector.update_train_step_metrics()
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if not stop:
            return
        if self._last_global_step_saved != trainer.global_step:
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)
        raise signals.Interrupted(
            signals.requested() or signal.SIGTERM,
            f"at step {trainer.global_step}, checkpoint {self.last_model_path} written; continue with ckpt_path=last",
        )
