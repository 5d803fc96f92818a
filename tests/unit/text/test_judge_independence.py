"""A judge that starts from the conditioning encoder's initial weights is flagged (docs/evaluation.md,
"Judge independence"): one seed and one architecture give the same start whatever the training split."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from mjexp.runs.eval_run.judge_independence import check_judge_independence, shared_initial_weights
from mjexp.text import clip_train
from mjexp.text.clip_module import DomainClipConfig
from mjexp.text.clip_train import METRICS_FILE

CONFIG = DomainClipConfig(steps=1, batch_size=8, warmup_steps=1, context_length=12)


def _trained_folder(root: Path, name: str, seed: int, width: int = 64) -> Path:
    folder = root / name
    folder.mkdir()
    key = {"seed": seed, "model_cfg": {"embed_dim": 64, "text_cfg": {"width": width}}, "split": name}
    (folder / METRICS_FILE).write_text(json.dumps({"val_retrieval_top1": 1.0, "key": key}))
    return folder


def test_fit_draws_the_initial_weights_from_the_seed_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoTraining:
        def __init__(self, **kwargs) -> None:
            pass

        def fit(self, module, train_dataloaders) -> None:
            pass

    monkeypatch.setattr(clip_train.L, "Trainer", NoTraining)
    model_cfg = CONFIG.model_cfg(16)
    judge, encoder, other = (
        clip_train._fit(model_cfg, CONFIG, train_loader=loader, seed=seed)
        for loader, seed in (("judge split", 1), ("train split", 1), ("train split", 2))
    )
    pairs = list(zip(judge.state_dict().values(), encoder.state_dict().values(), other.state_dict().values()))
    assert all(torch.equal(a, b) for a, b, _ in pairs)
    assert not all(torch.equal(a, c) for a, _, c in pairs)


def test_shared_initial_weights_needs_the_same_seed_and_architecture(tmp_path: Path) -> None:
    judge = _trained_folder(tmp_path, "judge", seed=1)
    assert shared_initial_weights(judge, _trained_folder(tmp_path, "train", seed=1)) == 1
    assert shared_initial_weights(judge, _trained_folder(tmp_path, "train_seed0", seed=0)) is None
    assert shared_initial_weights(judge, _trained_folder(tmp_path, "train_wide", seed=1, width=128)) is None
    untracked = tmp_path / "pretrained"
    untracked.mkdir()
    assert shared_initial_weights(judge, untracked) is None


def test_check_judge_independence_refuses_the_encoder_and_warns_on_a_shared_init(tmp_path: Path) -> None:
    judge = _trained_folder(tmp_path, "judge", seed=1)
    with pytest.raises(ValueError, match="must not be the conditioning encoder"):
        check_judge_independence(judge, judge)
    with pytest.warns(UserWarning, match=r"same architecture and seed \(1\)"):
        check_judge_independence(judge, _trained_folder(tmp_path, "train", seed=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_judge_independence(judge, _trained_folder(tmp_path, "train_seed0", seed=0))
