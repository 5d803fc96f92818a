"""A metric is one file: a toy metric registered here reaches report.json, the console table, the
paired section (report and console), the settings' MLflow runs and ``sweeps.compare``, through
the real ``mjexp.eval`` path with no other change."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from PIL import Image

from evaluation.metrics import Metric, MetricScores, PairingSettings, ScoreInputs, registered_temporarily
from mjexp.config import register_configs
from mjexp.runs.eval_run.run import run_evaluation
from reliability_helpers import REPO, sqlite_uri
from sweeps.compare import compare


class Brightness(Metric):
    """``toy/brightness``: the mean pixel value in [0, 1]; paired image by image."""

    name = "toy"
    record_key = "paired_toy_vs_first"

    def score(self, inputs: ScoreInputs) -> MetricScores:
        per_image = inputs.pixels.double().mean(dim=(1, 2, 3)).numpy() / 255
        se = per_image.std(ddof=1) / math.sqrt(len(per_image))
        return MetricScores({"toy/brightness": per_image.mean(), "toy/brightness/se": se}, {"toy/brightness": {"unit": "1"}},
                            state=per_image)

    def paired(self, own: np.ndarray, baseline: np.ndarray, settings: PairingSettings) -> dict[str, Any]:
        diff = own - baseline
        se = diff.std(ddof=1) / math.sqrt(len(diff))
        return {"metrics": {"toy/brightness": {"difference": diff.mean(), "standard_error": se, "z": diff.mean() / se}}}


def brightness_of(folder: Path) -> np.ndarray:
    """Independently of the scorer: each PNG's mean pixel value, in manifest order."""
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    rows.sort(key=lambda row: (row["prompt_index"], row["sample_index"]))
    return np.array([np.asarray(Image.open(folder / row["file"]), dtype=np.float64).mean() / 255 for row in rows])


def test_a_registered_metric_reaches_every_output(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register_configs()
    out = tmp_path / "eval"
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("eval", overrides=[
            f"ckpt={trained / 'export'}", f"output_dir={out}", "debug=tiny", "eval.grid.guidance.scale=[1,5]",
            "eval.judge.enabled=false", "eval.features=[]", f"tracking.tracking_uri={sqlite_uri(tmp_path)}",
        ])
    with registered_temporarily(Brightness()):
        run_evaluation(cfg)
        console = capsys.readouterr().out
        comparison = compare("eval", sqlite_uri(tmp_path), tmp_path / "comparison")

    records = json.loads((out / "report.json").read_text())["records"]
    first, second = (brightness_of(out / "generated" / r["label"]) for r in records)
    assert [r["metrics"]["toy/brightness"] for r in records] == pytest.approx([first.mean(), second.mean()])
    assert records[0]["params"]["toy/brightness"] == {"unit": "1"}
    paired = records[1]["paired_toy_vs_first"]
    assert paired["baseline"] == records[0]["label"] and "paired_toy_vs_first" not in records[0]
    assert paired["metrics"]["toy/brightness"]["difference"] == pytest.approx((second - first).mean())

    assert "toy/brightness" in console.splitlines()[[i for i, line in enumerate(console.splitlines())
                                                      if "setting" in line and "nfe" in line][0]]
    assert f"{records[1]['label']} vs {records[0]['label']}: toy/brightness {(second - first).mean():+.4f}" in console

    client = MlflowClient(sqlite_uri(tmp_path))
    runs = client.search_runs([client.get_experiment_by_name("eval").experiment_id])
    child = next(r for r in runs if r.data.tags.get("mjexp.setting") == records[1]["label"])
    assert child.data.metrics["paired/toy/brightness"] == pytest.approx((second - first).mean())

    assert "toy/brightness" in comparison.metrics
    by_arm = {arm.label: arm.metrics["toy/brightness"].mean for arm in comparison.arms}
    assert sorted(by_arm.values()) == pytest.approx(sorted([first.mean(), second.mean()]))
    assert [d.difference for d in comparison.paired if d.metric == "toy/brightness"] == pytest.approx(
        [(second - first).mean()])
    assert "toy/brightness" in (tmp_path / "comparison" / "comparison.md").read_text()
