"""Resuming a generation folder: rows made with other settings are refused, rows written before a
settings key existed count as that key's old behaviour (``ADDED_SETTINGS``), and the fields of a
disabled hires fix do not count."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mjexp.generation import MANIFEST, generate_to_folder, item_name

PROMPTS = ["a red circle", "a blue square"]


def settings(**sampler: object) -> dict:
    return {"sampler": {"name": "ddpm", "steps": 20, **sampler}, "guidance": {"scale": 3.0}}


def finished_folder(folder: Path, row_settings: dict) -> Path:
    """A folder whose manifest lists every item of PROMPTS (one sample each) as finished."""
    (folder / "images").mkdir(parents=True)
    rows = []
    for i, prompt in enumerate(PROMPTS):
        name = item_name(i, 0)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / "images" / name)
        rows.append({"file": f"images/{name}", "prompt": prompt, "prompt_index": i, "sample_index": 0,
                     "seed": 0, "settings": row_settings, "nfe": 20, "network_evals": 40})
    (folder / MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


def test_a_folder_from_before_sampler_noise_resumes_as_independent_noise(tmp_path: Path) -> None:
    folder = finished_folder(tmp_path / "old", settings())
    # Nothing is left to generate, so no sampler module is needed.
    manifest = generate_to_folder(None, PROMPTS, 1, folder, settings(noise="independent"), batch_size=2)
    assert sorted(manifest) == [(0, 0), (1, 0)]
    with pytest.raises(ValueError, match="other settings"):
        generate_to_folder(None, PROMPTS, 1, folder, settings(noise="brownian"), batch_size=2)


def test_rows_with_other_settings_are_refused(tmp_path: Path) -> None:
    folder = finished_folder(tmp_path / "f", settings(noise="independent"))
    generate_to_folder(None, PROMPTS, 1, folder, settings(noise="independent"), batch_size=2)
    with pytest.raises(ValueError, match="other settings"):
        generate_to_folder(None, PROMPTS, 1, folder, settings(noise="independent", steps=50), batch_size=2)


def test_fields_of_a_disabled_hires_fix_do_not_make_other_settings(tmp_path: Path) -> None:
    """Folders written when the default hires strength was 0.5 resume under the 0.1 default while
    the hires fix is off; with it on, the strength is part of the images."""
    def with_hires(enabled: bool, strength: float) -> dict:
        return {**settings(noise="independent"), "hires": {"enabled": enabled, "strength": strength, "scale": 2.0}}

    folder = finished_folder(tmp_path / "off", with_hires(False, 0.5))
    assert sorted(generate_to_folder(None, PROMPTS, 1, folder, with_hires(False, 0.1), batch_size=2)) == [(0, 0), (1, 0)]
    on = finished_folder(tmp_path / "on", with_hires(True, 0.5))
    with pytest.raises(ValueError, match="other settings"):
        generate_to_folder(None, PROMPTS, 1, on, with_hires(True, 0.1), batch_size=2)
    with pytest.raises(ValueError, match="other settings"):
        generate_to_folder(None, PROMPTS, 1, on, with_hires(False, 0.5), batch_size=2)
