"""Resuming a generation folder: rows made with other settings, another model, seed or resolution
are refused naming what differs, rows written before a settings key existed count as that key's old
behaviour (``ADDED_SETTINGS``), rows written before the model was recorded are never reused, and
the fields of a disabled hires fix do not count."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from mjexp.runs.generation import MANIFEST, generate_to_folder, item_name

PROMPTS = ["a red circle", "a blue square"]
MODEL = "0123456789abcdef" * 4
# Nothing is left to generate in these tests: the sampler module only has to say its seed and resolution.
SAMPLER = SimpleNamespace(seed=0, resolution=4)


def settings(**sampler: object) -> dict:
    return {"sampler": {"name": "ddpm", "steps": 20, **sampler}, "guidance": {"scale": 3.0}}


def generate(folder: Path, row_settings: dict, sampler: SimpleNamespace = SAMPLER, model: str = MODEL) -> dict:
    return generate_to_folder(sampler, PROMPTS, 1, folder, row_settings, batch_size=2, model=model)


def finished_folder(folder: Path, row_settings: dict) -> Path:
    """A folder whose manifest lists every item of PROMPTS (one sample each) as finished."""
    (folder / "images").mkdir(parents=True)
    rows = []
    for i, prompt in enumerate(PROMPTS):
        name = item_name(i, 0)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / "images" / name)
        rows.append({"file": f"images/{name}", "prompt": prompt, "prompt_index": i, "sample_index": 0,
                     "model": MODEL, "resolution": 4, "seed": 0, "settings": row_settings,
                     "nfe": 20, "network_evals": 40})
    (folder / MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


def test_a_folder_from_before_sampler_noise_resumes_as_independent_noise(tmp_path: Path) -> None:
    folder = finished_folder(tmp_path / "old", settings())
    manifest = generate(folder, settings(noise="independent"))
    assert sorted(manifest) == [(0, 0), (1, 0)]
    with pytest.raises(ValueError, match="other settings"):
        generate(folder, settings(noise="brownian"))


def test_rows_with_other_settings_are_refused(tmp_path: Path) -> None:
    folder = finished_folder(tmp_path / "f", settings(noise="independent"))
    generate(folder, settings(noise="independent"))
    with pytest.raises(ValueError, match="other settings"):
        generate(folder, settings(noise="independent", steps=50))


def test_fields_of_a_disabled_hires_fix_do_not_make_other_settings(tmp_path: Path) -> None:
    """Folders written when the default hires strength was 0.5 resume under the 0.1 default while
    the hires fix is off; with it on, the strength is part of the images."""
    def with_hires(enabled: bool, strength: float) -> dict:
        return {**settings(noise="independent"), "hires": {"enabled": enabled, "strength": strength, "scale": 2.0}}

    folder = finished_folder(tmp_path / "off", with_hires(False, 0.5))
    assert sorted(generate(folder, with_hires(False, 0.1))) == [(0, 0), (1, 0)]
    on = finished_folder(tmp_path / "on", with_hires(True, 0.5))
    with pytest.raises(ValueError, match="other settings"):
        generate(on, with_hires(True, 0.1))
    with pytest.raises(ValueError, match="other settings"):
        generate(on, with_hires(False, 0.5))


@pytest.mark.parametrize(
    ("sampler", "model", "message"),
    [
        (SAMPLER, "f" * 64, r"other model weights \(0123456789ab, now ffffffffffff\); use a new output folder"),
        (SimpleNamespace(seed=1, resolution=4), MODEL, r"other seed \(0, now 1\)"),
        (SimpleNamespace(seed=0, resolution=8), MODEL, r"other resolution \(4, now 8\)"),
    ],
)
def test_rows_of_another_model_seed_or_resolution_are_refused(
    tmp_path: Path, sampler: SimpleNamespace, model: str, message: str
) -> None:
    folder = finished_folder(tmp_path / "f", settings(noise="independent"))
    with pytest.raises(ValueError, match=rf"{folder} holds 2 images made with {message}"):
        generate(folder, settings(noise="independent"), sampler, model)


def test_settings_differences_are_named_key_by_key(tmp_path: Path) -> None:
    folder = finished_folder(tmp_path / "f", settings(noise="independent"))
    with pytest.raises(ValueError, match=r"other settings \(sampler\.steps=20, now 50\)"):
        generate(folder, settings(noise="independent", steps=50))


def test_rows_without_a_recorded_model_are_never_reused(tmp_path: Path) -> None:
    """Folders written before rows recorded the model: which weights made them cannot be told."""
    folder = finished_folder(tmp_path / "old", settings(noise="independent"))
    rows = [json.loads(line) for line in (folder / MANIFEST).read_text().splitlines()]
    old_rows = [{k: v for k, v in row.items() if k not in ("model", "resolution")} for row in rows]
    (folder / MANIFEST).write_text("".join(json.dumps(row) + "\n" for row in old_rows))
    expected = r"other model weights \(not recorded, now 0123456789ab\); resolution \(not recorded, now 4\)"
    with pytest.raises(ValueError, match=expected):
        generate(folder, settings(noise="independent"))
