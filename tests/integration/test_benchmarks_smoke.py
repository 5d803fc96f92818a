"""The benchmark harness keeps working: ``python -m benchmarks.run --smoke`` end to end (timings are
not checked), the size matching of the diffusers U-Net, and the harness's measuring primitives."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.harness import interleaved, peak_memory_bytes
from benchmarks.judge_robustness import PERTURBATIONS, colour_statistics
from benchmarks.judge_similarity import linear_cka, weight_cosine
from benchmarks.patch_fid_scale import main as patch_fid_scale
from benchmarks import networks
from benchmarks.networks import (
    NetworkCase, diffusers_call, flops, make_inputs, matching_diffusers_unet, our_call, preset_spec, run_network_case,
)
from cli_helpers import run_cli
from mjexp.diffusion.unet import UNet


def test_smoke_run_prints_and_records_every_suite(tmp_path: Path) -> None:
    record = tmp_path / "BENCHMARKS.md"
    done = run_cli("benchmarks.run", "--smoke", "--record", str(record), "--cache-dir", str(tmp_path), cwd=tmp_path)
    text = record.read_text()
    assert text.strip() in done.stdout  # what is recorded is what was printed
    assert "- command: `python -m benchmarks.run --smoke --record" in text
    assert "torch " in text and "diffusers " in text and "torch-fidelity " in text and "threads" in text
    rows = [line for line in text.splitlines() if line.startswith("| cpu") or line.startswith("| cuda")]
    suites = {line.split(" | ")[1] for line in rows}
    assert suites == {"network", "sampler loop", "evaluation"}
    for line in rows:  # every row names the device and has a finite ratio
        ratio = line.split(" | ")[6]
        assert re.fullmatch(r"[0-9.e+-]+", ratio), line
    assert "MFU" in text


def test_mfu_path_counts_a_training_step_as_three_forwards(monkeypatch: pytest.MonkeyPatch) -> None:
    """The MFU that only a GPU run prints, exercised on the CPU with a stand-in peak: the counted
    training FLOPs are forward + backward (backward = 2 forwards: input and weight gradients)."""
    monkeypatch.setattr(networks, "peak_bf16_flops", lambda device: 1e12)
    batch = 3
    rows, extra = run_network_case(NetworkCase("tiny", 2, batch), torch.device("cpu"), False, repeats=1, warmup=0)
    forward_per_image = next(r for r in rows if r.metric == "forward FLOPs per image").ours * 1e9
    assert extra["train_flops_per_step"] / (3 * batch * forward_per_image) == pytest.approx(1.0, abs=0.01)
    assert 0 < extra["mfu"] < 1


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_diffusers_unet_matches_parameters_and_flops(preset: str) -> None:
    spec = preset_spec(preset)
    ours, theirs = UNet(spec), matching_diffusers_unet(spec, 16)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert abs(count(ours) / count(theirs) - 1) < 0.05
    inputs = make_inputs(1, 16, torch.device("cpu"))
    with torch.no_grad():
        ratio = flops(lambda: our_call(ours, inputs)) / flops(lambda: diffusers_call(False)(theirs, inputs))
    assert abs(ratio - 1) < 0.05


def test_peak_memory_counts_live_tensors_only() -> None:
    def work() -> torch.Tensor:
        a = torch.ones(1000, 250)  # 1 MB
        b = a * 2  # 2 MB live
        del a
        c = b + 1  # 2 MB live again (a was freed)
        return c.sum()

    assert peak_memory_bytes(work, torch.device("cpu")) == 2 * 10**6 + 4  # two 1 MB tensors live at once, plus the 0-d sum


def test_interleaved_alternates_order_and_warms_up() -> None:
    calls: list[str] = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1,
                        device=torch.device("cpu"))
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}


def test_step_noise_benchmark_prints_its_table(tmp_path: Path) -> None:
    done = run_cli(
        "benchmarks.step_noise", "--batch", "2", "--steps", "3", "--repeats", "1", "--presets", "tiny", cwd=tmp_path
    )
    row = next(line for line in done.stdout.splitlines() if line.startswith("| tiny"))
    values = [float(cell) for cell in row.strip("| ").split(" | ")[2:]]
    assert len(values) == 3 and all(v > 0 for v in values), row


def test_patch_fid_scale_ranks_native_renders_before_every_upscaler(capsys: pytest.CaptureFixture[str]) -> None:
    assert patch_fid_scale(["--size", "16", "--bootstrap", "10"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "px" in line]
    values = {row.split(" | ")[0].strip("| "): float(row.split(" | ")[1]) for row in rows}
    assert list(values) == ["native 16 px render", "8 px render, nearest upscale", "8 px render, bilinear upscale",
                            "8 px render, bicubic upscale"]
    native = values.pop("native 16 px render")
    assert all(value > 5 * native for value in values.values()), values


def test_encoder_seeds_benchmark_trains_one_encoder_per_length_and_seed(tmp_path: Path) -> None:
    done = run_cli(
        "benchmarks.encoder_seeds", "--steps", "2,3", "--seeds", "0,1", "--override", "debug=tiny",
        "--override", f"text_encoder.cache_dir={tmp_path / 'cache'}", cwd=tmp_path,
    )
    rows = [line for line in done.stdout.splitlines() if line.startswith(("| 2 |", "| 3 |"))]
    assert len(rows) == 2, done.stdout
    for row in rows:
        accuracy = [float(cell) for cell in row.strip("| ").split(" | ")[1:3]]
        assert all(0.0 <= a <= 1.0 for a in accuracy), row
    assert len(list((tmp_path / "cache").glob("train-seed*"))) == 4  # 2 lengths x 2 seeds, each cached

    # The same folders through benchmarks.judge_similarity, a seed-0 encoder standing in for the judge.
    judge, *_ = sorted((tmp_path / "cache").glob("train-seed0-*"))
    encoders = sorted((tmp_path / "cache").glob("train-seed*"))
    done = run_cli("benchmarks.judge_similarity", "--judges", str(judge), "--encoders", *map(str, encoders), cwd=tmp_path)
    cells = {row.split(" | ")[0].strip("| "): row.strip("| ").split(" | ")[4] for row in done.stdout.splitlines()
             if row.startswith("| train-seed")}
    assert len(cells) == 4, done.stdout
    assert cells[judge.name] == "1.000 / 1.000"
    cosines = {name: float(cell.split(" / ")[0]) for name, cell in cells.items()}
    assert all(cosines[name] > 0.99 for name in cosines if name.startswith("train-seed0")), cells  # one start
    assert all(cosines[name] < 0.9 for name in cosines if name.startswith("train-seed1")), cells

    # And through benchmarks.judge_robustness, with a folder of "generated" images to describe.
    pngs = tmp_path / "generated"
    pngs.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 60 * i, dtype=np.uint8)).save(pngs / f"{i}.png")
    done = run_cli("benchmarks.judge_robustness", "--judges", str(judge), "--images", "16", "--prompt-set",
                   "shapes_single_v1", "--generated", str(pngs), "--override", "debug=tiny", cwd=tmp_path)
    rows = [row.strip("| ").split(" | ") for row in done.stdout.splitlines() if row.startswith("| ")]
    rows = [row for row in rows if row[0] != "images"]  # not the header rows
    accuracy = {row[0]: [float(v) for v in row[1].split(" / ")] for row in rows if len(row) == 2}
    assert set(accuracy) == set(PERTURBATIONS) and all(0 <= v <= 1 for vs in accuracy.values() for v in vs), done.stdout
    described = {row[0]: row[1] for row in rows if len(row) == 7}
    assert described == {"real test images": "16", str(pngs): "3"}, done.stdout


def test_colour_statistics_by_hand() -> None:
    image = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    image[0, :, 0, :] = torch.tensor([255, 0, 0], dtype=torch.uint8).view(3, 1)  # bright red row
    image[0, :, 1, :] = torch.tensor([20, 30, 20], dtype=torch.uint8).view(3, 1)  # dark, slightly green
    stats = colour_statistics(image)
    assert stats == {"bright share": 0.5, "bright chroma": 255.0, "dark chroma": 10.0, "dark value": 30.0}


def test_linear_cka_and_weight_cosine_against_their_invariances() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=g)
    rotation, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
    assert linear_cka(x, 3.0 * x @ rotation + 5.0) == pytest.approx(1.0)  # rotation, scale and shift
    assert linear_cka(x, torch.randn(200, 16, generator=g)) < 0.2  # unrelated features
    state = {"a": torch.randn(4, 3, generator=g), "b": torch.randn(5, generator=g)}
    assert weight_cosine(state, {k: 2 * v for k, v in state.items()}) == pytest.approx(1.0)
    assert weight_cosine(state, {k: -v for k, v in state.items()}) == pytest.approx(-1.0)
    assert weight_cosine(state, {"a": state["a"], "b": torch.randn(6)}) == pytest.approx(1.0)  # shared tensors only
