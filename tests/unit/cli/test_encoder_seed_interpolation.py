"""``'text_encoder.seed=${seed}'`` (docs/sweeps.md's way to redraw the domain CLIP with each repeat)
must reach the encoder's training as the run's seed."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from mjexp.config import register_configs
from mjexp.runs import components
from mjexp.runs.components import train_or_reuse_domain_clip

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(("overrides", "expected"), [(["seed=3"], 0), (["seed=3", "text_encoder.seed=${seed}"], 3)])
def test_domain_clip_trains_with_the_interpolated_seed(
    overrides: list[str], expected: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["text_encoder=domain_clip", *overrides])
    seeds: list[int] = []
    monkeypatch.setattr(components, "train_domain_clip", lambda *args, seed, **kwargs: seeds.append(seed) or tmp_path)
    train_or_reuse_domain_clip(cfg.text_encoder, datamodule=None)
    assert seeds == [expected]
