"""Generated images are reused only when everything that made them matches: the model's weights
(a content hash, however the model was loaded), each item's prompt, the seed, the sampling
settings and the resolution. An item whose prompt changed is generated again; a folder of another
model, seed, setting or resolution is refused naming what differs, except a training's own
evaluation folder, which a continued training fills again with its new weights' images."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from reliability_helpers import REPO, train
from mjexp.runs.models import load_model

RED, BLUE = "a red circle in the top left", "a blue square in the bottom right"


def sample(ckpt: Path, out: Path, *overrides: str) -> None:
    """``python -m mjexp.sample ckpt=... n=2 output_dir=...`` in this process (4 sampling steps)."""
    from mjexp.config import register_configs
    from mjexp.runs.sample_run import run_sampling

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("sample", overrides=[f"ckpt='{ckpt}'", f"output_dir={out}", "n=2", "sampler.steps=4", *overrides])
    run_sampling(cfg)


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted((folder / "images").glob("*.png"))}


def manifest_prompts(folder: Path) -> list[str]:
    return [json.loads(line)["prompt"] for line in (folder / "manifest.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def red(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 2 samples of RED from the trained export (tests work on copies of it)."""
    folder = tmp_path_factory.mktemp("red") / "X"
    sample(trained / "export", folder, f"prompt={RED}")
    return folder


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


def test_another_prompt_into_the_same_folder_is_generated_again(
    trained: Path, red: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    export, folder = trained / "export", copy_of(red, tmp_path)
    sample(export, folder, f"prompt={BLUE}")
    assert "X: 2 images were made for another prompt (e.g. p00000_s000.png: 'a red circle in the top left', now " \
           "'a blue square in the bottom right'); generating them again" in capsys.readouterr().out
    assert manifest_prompts(folder) == [BLUE, BLUE]
    sample(export, tmp_path / "fresh", f"prompt={BLUE}")
    blue = digests(tmp_path / "fresh")
    assert digests(folder) == blue and set(blue.values()).isdisjoint(digests(red).values())  # as drawn afresh


def test_the_same_weights_loaded_from_the_checkpoint_reuse_the_images(
    trained: Path, red: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The fingerprint is of the loaded weights, not of the file: the export and the last
    checkpoint hold the same EMA weights, so nothing is drawn again."""
    folder = copy_of(red, tmp_path)
    sample(trained / "checkpoints" / "last.ckpt", folder, f"prompt={RED}")
    printed = capsys.readouterr().out
    assert "X: reusing 2 of 2 images made before by the same model, prompts, seed and settings" in printed
    assert digests(folder) == digests(red) and manifest_prompts(folder) == [RED, RED]


def with_resolution(export: Path, tmp_path: Path, resolution: int) -> Path:
    """A copy of ``export`` whose config samples at another resolution (same weights)."""
    copy = tmp_path / "export-other-resolution"
    shutil.copytree(export, copy)
    config = copy / "config.yaml"
    text = config.read_text()
    assert "  resolution: 16\n" in text
    config.write_text(text.replace("  resolution: 16\n", f"  resolution: {resolution}\n", 1))
    return copy


# What differs from the folder's images -> how the refusal names it.
REFUSED = {
    "another checkpoint": r"other model weights \([0-9a-f]{12}, now [0-9a-f]{12}\)",
    "weights=raw": r"other model weights \([0-9a-f]{12}, now [0-9a-f]{12}\)",
    "seed=1": r"other seed \(0, now 1\)",
    "sampler.steps=5": r"other settings \(sampler\.steps=4, now 5\)",
    "guidance.scale=5": r"other settings \(guidance\.scale=3\.0, now 5\.0\)",
    "resolution": r"other resolution \(16, now 8\)",
}


@pytest.mark.parametrize("change", list(REFUSED))
def test_a_folder_of_another_model_seed_setting_or_resolution_is_refused(
    trained: Path, red: Path, tmp_path: Path, change: str
) -> None:
    folder = copy_of(red, tmp_path)
    ckpt, overrides = trained / "export", [f"prompt={RED}"]
    if change == "another checkpoint":
        ckpt = trained / "checkpoints" / "step=000002.ckpt"
    elif change == "resolution":
        ckpt = with_resolution(ckpt, tmp_path, 8)
    else:
        overrides.append(change)
    refusal = rf"^{re.escape(str(folder))} holds 2 images made with {REFUSED[change]}; use a new output folder"
    with pytest.raises(ValueError, match=refusal):
        sample(ckpt, folder, *overrides)
    assert digests(folder) == digests(red) and manifest_prompts(folder) == [RED, RED]


# The end-of-training evaluation of debug=tiny (8 prompts x 2 samples, a tiny judge) at 4 sampling steps.
EVAL = ("evaluate=true", "eval.prompt_set=data", "+eval.grid.guidance.scale=[3.0]", "sampler.steps=4",
        "tracking.enabled=false")


def scores(out: Path) -> dict[str, float]:
    [record] = json.loads((out / "eval" / "report.json").read_text())["records"]
    return {k: v for k, v in record["metrics"].items() if not k.startswith("cost/")}


def test_continued_training_evaluates_its_new_weights(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A finished training continued with ``ckpt_path=last`` and more steps evaluates into the same
    ``eval/`` folder: every image there is drawn again with the new weights and scored again."""
    out = tmp_path / "run"
    train(out, *EVAL)
    [folder] = list((out / "eval" / "generated").iterdir())
    first, first_scores = digests(folder), scores(out)
    capsys.readouterr()
    train(out, *EVAL, "ckpt_path=last", "trainer.max_steps=6")
    assert f"{folder} holds 16 images made with other model weights (" in capsys.readouterr().out
    second = digests(folder)
    assert second.keys() == first.keys() and len(first) == 16
    assert set(second.values()).isdisjoint(first.values())
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    assert {row["model"] for row in rows} == {load_model(out / "export").fingerprint}
    assert scores(out)["fid/judge"] != first_scores["fid/judge"]
