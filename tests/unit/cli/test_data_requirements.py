"""What a run needs of its data is checked before anything trains, all at once, with the numbers
and the keys that fix each problem; batch sizes larger than a split are fitted to it and said."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from mjexp.runs.components import build_datamodule
from mjexp.config import register_configs
from mjexp.data.requirements import DataTooSmallError, check_evaluation_data, check_training_data, enforce

REPO = Path(__file__).resolve().parents[3]


def train_config(*overrides: str):  # noqa: ANN201
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=["output_dir=unused", *overrides])


def test_batch_sizes_above_the_train_split_are_fitted_and_said(capsys: pytest.CaptureFixture) -> None:
    cfg = train_config("data.train_size=10", "data.batch_size=64")
    check = check_training_data(cfg, build_datamodule(cfg.data))
    assert check.problems == []
    assert check.fitted == {"data.batch_size": 10, "text_encoder.batch_size": 10}
    assert enforce(check) == check.fitted
    printed = capsys.readouterr().out
    assert "Note: data.batch_size=64 is more than the train split's 10 images: it trains on batches of 10" in printed
    assert "text_encoder.batch_size=256" in printed
    assert enforce(check, quiet=True) == check.fitted and capsys.readouterr().out == ""


def test_every_unmet_evaluation_requirement_is_listed_with_its_keys() -> None:
    cfg = train_config("data.test_size=30", "data.judge_size=1", "eval.samples_per_prompt=2")
    datamodule = build_datamodule(cfg.data)
    check = check_evaluation_data(cfg, cfg.data, datamodule, n_prompts=20)
    assert len(check.problems) == 3
    judge, reference, generated = check.problems
    assert "the judge needs at least 2 images in the judge split, it has 1: raise data.judge_size" in judge
    assert "fid/judge needs at least 65 reference images (feature dimension 64 + 1); the test split" in reference
    assert "has 30: raise data.test_size, use a larger eval.reference_split" in reference
    assert "lower eval.judge.embed_dim" in reference
    assert "20 prompts x eval.samples_per_prompt=2 give 40" in generated
    with pytest.raises(DataTooSmallError, match="nothing was trained") as error:
        enforce(check_training_data(cfg, datamodule), check)
    assert str(error.value).count("\n  - ") == 3 and "docs/data.md" in str(error.value)


def test_folder_data_names_its_fraction_keys_and_a_smaller_judge_needs_fewer_images(tmp_path: Path) -> None:
    cfg = train_config("data=imagefolder", f"data.root={tmp_path}", "eval.judge.embed_dim=8")
    fake = {"judge": 5, "test": 8}

    class Sizes:  # only the split sizes matter to the check
        def dataset(self, split: str) -> list:
            return [None] * fake[split]

    [reference] = check_evaluation_data(cfg, cfg.data, Sizes(), n_prompts=8).problems
    assert "needs at least 9 reference images" in reference and "raise data.test_fraction" in reference
    fake["test"] = 9
    assert check_evaluation_data(cfg, cfg.data, Sizes(), n_prompts=8).problems == []


def test_a_training_too_small_for_its_evaluation_stops_before_training_anything(tmp_path: Path) -> None:
    from mjexp.runs.train_run import run_training

    cache = tmp_path / "cache"
    cfg = train_config(
        "debug=tiny", "data.test_size=4", "eval.grid.guidance.scale=[1,3]", f"text_encoder.cache_dir={cache}",
        f"eval.judge.cache_dir={cache}", "tracking.enabled=false", f"output_dir={tmp_path / 'out'}",
    )
    with pytest.raises(DataTooSmallError, match="fid/judge needs at least 9 reference images"):
        run_training(cfg)
    assert not cache.exists() and not (tmp_path / "out" / "checkpoints").exists()
