"""SIGKILL while generating an evaluation set: re-running resumes from the manifest, with no
duplicates, no gaps, the same images and the same metrics as an uninterrupted evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

from hydra import compose, initialize_config_dir

from reliability_helpers import REPO, kill_when, sqlite_uri

LABEL = "guidance.scale=3.0"
ITEMS = 16  # 8 prompts x 2 samples, generated one at a time


def eval_overrides(trained: Path, out: Path, cache: Path) -> list[str]:
    return [
        f"ckpt={trained / 'export'}", f"output_dir={out}", f"tracking.tracking_uri={sqlite_uri(out.parent)}",
        "eval.prompt_set=data", "eval.samples_per_prompt=2", "eval.max_prompts=8", "eval.batch_size=1",
        "eval.grid_prompts=4", "eval.bootstrap=10", "eval.progress_bar=false", "sampler.steps=20",
        "eval.judge.embed_dim=8", "eval.judge.width=16", "eval.judge.steps=4", "eval.judge.batch_size=16",
        "eval.judge.warmup_steps=1", f"eval.judge.cache_dir={cache / 'judge'}", f"eval.cache_dir={cache / 'stats'}",
    ]


def evaluate(overrides: list[str]) -> None:
    from mjexp.config import register_configs
    from mjexp.runs.eval_run.run import run_evaluation

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        run_evaluation(compose("eval", overrides=overrides))


def manifest_rows(out: Path) -> list[dict]:
    path = out / "generated" / LABEL / "manifest.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line torn by the kill
    return rows


def scored_metrics(out: Path) -> dict[str, float]:
    [record] = json.loads((out / "report.json").read_text())["records"]
    return {k: v for k, v in record["metrics"].items() if not k.startswith("cost/")}


def test_killed_generation_resumes_without_duplicates_or_gaps(trained: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    evaluate(eval_overrides(trained, reference, cache))

    overrides = [*eval_overrides(trained, killed, cache), f"hydra.run.dir={tmp_path / 'hydra'}"]
    kill_when("mjexp.eval", overrides, tmp_path, lambda: len(manifest_rows(killed)) >= 1)
    before = {(r["prompt_index"], r["sample_index"]) for r in manifest_rows(killed)}
    assert 1 <= len(before) < ITEMS
    assert not (killed / "report.json").exists()

    evaluate(overrides)
    rows = manifest_rows(killed)
    keys = [(r["prompt_index"], r["sample_index"]) for r in rows]
    assert len(keys) == len(set(keys)) == ITEMS  # no duplicates, no gaps
    assert set(keys) == {(i, j) for i in range(8) for j in range(2)}
    assert before < set(keys)
    for row in rows:  # each image as the uninterrupted run drew it
        assert (killed / "generated" / LABEL / row["file"]).read_bytes() == (
            reference / "generated" / LABEL / row["file"]
        ).read_bytes(), row["file"]
    assert scored_metrics(killed) == scored_metrics(reference)
    [record] = json.loads((killed / "report.json").read_text())["records"]
    assert math.isfinite(record["costs"]["images_per_second"])  # over the images this run made

    evaluate(overrides)  # all on disk: nothing generated now, so no generation speed to report
    [record] = json.loads((killed / "report.json").read_text())["records"]
    assert record["costs"]["images_per_second"] is None  # NaN, which the report writes as null
    assert scored_metrics(killed) == scored_metrics(reference)
