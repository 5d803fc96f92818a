"""``sweeps.compare`` on MLflow runs laid out as mjexp logs them (written here directly, no training)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from sweeps.aggregate import is_headline
from sweeps.compare import compare, main, markdown
from sweeps.runs import JUDGE_WEIGHTS_PARAM

Z95 = 1.959963984540054  # normal quantile of a 95 % interval


def log_training(
    client: MlflowClient, experiment_id: str, overrides: dict[str, Any], settings: list[tuple[dict, dict]],
    status: str = "FINISHED", error: str | None = None, params: dict[str, Any] | None = None,
    child_params: dict[str, Any] | None = None,
) -> None:
    """A parent run tagged with its overrides (and extra config ``params``) and one nested run per
    (setting, metrics), each with ``child_params``."""
    tags = {f"override.{k}": str(v) for k, v in overrides.items()} | ({"error": error} if error else {})
    parent = client.create_run(experiment_id, tags=tags).info.run_id
    client.log_param(parent, "seed", str(overrides.get("seed", 0)))
    for key, value in (params or {}).items():
        client.log_param(parent, key, str(value))
    for setting, metrics in settings:
        child = client.create_run(experiment_id, tags={"mlflow.parentRunId": parent}).info.run_id
        for key, value in setting.items():
            client.log_param(child, f"setting.{key}", str(value))
        for key, value in (child_params or {}).items():
            client.log_param(child, key, str(value))
        for key, value in metrics.items():
            client.log_metric(child, key, value)
        client.set_terminated(child)
    client.set_terminated(parent, status=status)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('compare') / 'mlflow.db'}"
    client = MlflowClient(uri)

    # Two samplers x two step counts x three seeds; FID = f(sampler, steps) + seed offset.
    samplers = client.create_experiment("samplers")
    for seed in range(3):
        settings = []
        for sampler, base in (("ddim", 10.0), ("heun", 8.0)):
            for steps in (5, 10):
                fid = base - steps / 5 + 0.5 * seed
                metrics = {
                    "fid/judge": fid, "fid/judge/ci_low": fid - 0.2 * (seed + 1), "fid/judge/ci_high": fid + 0.2 * (seed + 1),
                    "clip_score/judge": 20 + steps + seed, "clip_score/judge/se": 0.1,
                    "cost/nfe": steps * (2 if sampler == "heun" else 1), "cost/images_per_second": 4.0,
                }
                settings.append(({"sampler.name": sampler, "sampler.steps": steps}, metrics))
        log_training(client, samplers, {"+experiment": "sampler_steps", "seed": seed}, settings)

    # Hires strengths of one single-seed training, plus a training that failed.
    hires = client.create_experiment("hires")
    log_training(client, hires, {"seed": 0}, [
        ({"hires.strength": s}, {"fid/judge": 5 - s, "clip_score/judge": 20 + s, "base/fid/judge": 6.0}) for s in (0.3, 0.5, 0.7)
    ])
    log_training(client, hires, {"seed": 1, "optim.lr": 1e30}, [], status="FAILED", error="NonFiniteLossError: inf")

    # Seed repeats with the domain CLIP: its seed fixed at 0, or following the seed.
    for experiment, encoder_seed in (("encoder_fixed", lambda seed: 0), ("encoder_redrawn", lambda seed: seed)):
        experiment_id = client.create_experiment(experiment)
        for seed in range(2):
            log_training(client, experiment_id, {"seed": seed}, [({"guidance.scale": 3.0}, {"fid/judge": 1.0 + seed})],
                         params={"text_encoder.name": "domain_clip", "text_encoder.seed": encoder_seed(seed)},
                         child_params={JUDGE_WEIGHTS_PARAM: "a" * 64})

    # Arms scored by two judges (another eval.judge.seed), each arm with two seeds.
    judges = client.create_experiment("judges")
    for judge_seed, sha in ((1, "a" * 64), (2, "b" * 64)):
        for seed in range(2):
            log_training(client, judges, {"seed": seed, "eval.judge.seed": judge_seed},
                         [({"guidance.scale": 3.0}, {"attr_acc/judge/mean": 0.9})], child_params={JUDGE_WEIGHTS_PARAM: sha})
    # Guidance scales 1 and 3 of three seeds, seed 0 trained twice: a metric with a seed effect
    # shared by both scales of a training, a scale effect of +0.1, and per-run noise.
    paired = client.create_experiment("paired")
    for seed, noise_1, noise_3 in PAIRED_RUNS:
        shared = 0.7 + SEED_EFFECT[seed]
        log_training(client, paired, {"seed": seed}, [
            ({"guidance.scale": 1.0}, {"attr_acc/judge/mean": shared + noise_1}),
            ({"guidance.scale": 3.0}, {"attr_acc/judge/mean": shared + 0.1 + noise_3}),
        ])

    # As mjexp.eval logs them: scale 3 and 5 paired within each run with scale 1 (their paired SEs
    # and the scale-1 run's name), except scale 5 of seed 1, which names another run.
    within = client.create_experiment("within")
    for seed, se in WITHIN_SE.items():
        parent = client.create_run(within, tags={"override.seed": str(seed)}).info.run_id
        client.log_param(parent, "seed", str(seed))
        for scale in (1.0, 3.0, 5.0):
            name = f"guidance.scale={scale}"
            child = client.create_run(within, run_name=name, tags={"mlflow.parentRunId": parent}).info.run_id
            client.log_param(child, "setting.guidance.scale", str(scale))
            client.log_metric(child, "attr_acc/judge/mean", 0.8 + 0.05 * scale + 0.01 * seed)
            if scale > 1:
                client.log_param(child, "paired.baseline", "another run" if (seed, scale) == (1, 5.0) else "guidance.scale=1.0")
                client.log_metric(child, "paired/attr_acc/judge/mean", 0.05 * (scale - 1))
                client.log_metric(child, "paired/attr_acc/judge/mean/se", se)
            client.set_terminated(child)
        client.set_terminated(parent)
    return uri


WITHIN_SE = {0: 0.01, 1: 0.02}
SEED_EFFECT = {0: 0.0, 1: 0.3, 2: -0.2}
PAIRED_RUNS = [(0, 0.00, 0.02), (0, 0.04, 0.00), (1, 0.01, 0.05), (2, -0.02, 0.01)]  # seed, noise at 1, at 3
T_975_DF2 = 4.302652729911275  # Student t quantile, 2 degrees of freedom


def test_a_setting_evaluated_again_under_one_training_counts_once(tmp_path: Path) -> None:
    """A training resumed after a crash in its evaluation logs its settings' runs again: the newest
    run of each setting is the measurement, not a second seed."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("resumed")
    parent = client.create_run(experiment, tags={"override.seed": "0"}).info.run_id
    client.log_param(parent, "seed", "0")
    for value in (0.5, 0.7):  # first attempt, then the resumed evaluation
        child = client.create_run(experiment, run_name="guidance.scale=3.0",
                                  tags={"mlflow.parentRunId": parent, "mjexp.setting": "guidance.scale=3.0"}).info.run_id
        client.log_param(child, "setting.guidance.scale", "3.0")
        client.log_metric(child, "attr_acc/judge/mean", value)
        client.set_terminated(child)
    client.set_terminated(parent)
    [arm] = compare("resumed", uri, tmp_path / "out").arms
    assert arm.runs == 1 and arm.metrics["attr_acc/judge/mean"].mean == pytest.approx(0.7)


def test_runs_of_one_seed_are_averaged_before_pooling(store: str, tmp_path: Path) -> None:
    result = compare("paired", store, tmp_path)
    arm = next(a for a in result.arms if a.factors["guidance.scale"] == "3.0")
    assert arm.replicates == ["0", "1", "2"] and arm.runs == 4
    per_seed = np.array([0.7 + 0.1 + (0.02 + 0.00) / 2, 0.7 + 0.3 + 0.1 + 0.05, 0.7 - 0.2 + 0.1 + 0.01])
    estimate = arm.metrics["attr_acc/judge/mean"]
    assert estimate.n == 3 and estimate.mean == pytest.approx(per_seed.mean())
    assert estimate.se_seeds == pytest.approx(per_seed.std(ddof=1) / math.sqrt(3))
    text = (tmp_path / "comparison.md").read_text()
    assert "| 3 (4 runs) |" in text and "2 arm(s) hold more runs than distinct `seed` values" in text


def test_paired_differences_cancel_what_a_seed_shares(store: str, tmp_path: Path) -> None:
    result = compare("paired", store, tmp_path)  # default baseline: the varying setting's first value
    assert str(result.baseline) == "guidance.scale=1.0"
    [paired] = result.paired
    differences = np.array([0.1 + 0.01 - 0.02, 0.1 + 0.05 - 0.01, 0.1 + 0.01 + 0.02])  # per seed, seed 0 averaged
    se = differences.std(ddof=1) / math.sqrt(3)
    assert (paired.arm, paired.baseline, paired.n_seeds) == ("guidance.scale=3.0", "guidance.scale=1.0", 3)
    assert paired.difference == pytest.approx(differences.mean()) and paired.se == pytest.approx(se)
    assert (paired.ci_low, paired.ci_high) == pytest.approx((0.12 - T_975_DF2 * se, 0.12 + T_975_DF2 * se))
    unpaired = next(a for a in result.arms if a.label == "guidance.scale=3.0").metrics["attr_acc/judge/mean"]
    assert paired.se < unpaired.se_seeds / 5  # the seed effect (+-0.3) is gone
    with open(tmp_path / "paired.csv") as f:
        [row] = list(csv.DictReader(f))
    assert row["metric"] == "attr_acc/judge/mean" and float(row["difference"]) == pytest.approx(0.12)
    assert "## Paired with `guidance.scale=1.0`" in (tmp_path / "comparison.md").read_text()
    assert (tmp_path / "paired.png").read_bytes()[:4] == b"\x89PNG"


def test_baseline_is_chosen_on_the_command_line_and_checked(store: str, tmp_path: Path, capsys) -> None:
    main(["samplers", "--tracking-uri", store, "--out", str(tmp_path), "--baseline", "sampler.steps=5"])
    assert "## Paired with `sampler.steps=5`" in capsys.readouterr().out
    with open(tmp_path / "paired.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["metric"] == "fid/judge"]
    # FID = base - steps / 5 + 0.5 seed: 10 steps is 1 lower at every seed, so no spread.
    assert [(r["arm"], float(r["difference"]), float(r["se_seeds"])) for r in rows] == [
        ("sampler.name=ddim, sampler.steps=10", pytest.approx(-1.0), pytest.approx(0.0, abs=1e-12)),
        ("sampler.name=heun, sampler.steps=10", pytest.approx(-1.0), pytest.approx(0.0, abs=1e-12)),
    ]
    for baseline, error in (("optim.lr=1", "'optim.lr' is not a factor that varies between the arms; those are: "
                             "sampler.name, sampler.steps"),
                            ("sampler.steps=7", "no arm has sampler.steps=7; its values are: 5, 10"),
                            ("sampler.steps", "--baseline takes KEY=VALUE")):
        with pytest.raises(SystemExit) as exit_info:
            main(["samplers", "--tracking-uri", store, "--out", str(tmp_path), "--baseline", baseline])
        assert exit_info.value.code == 2 and error in capsys.readouterr().err


def test_within_run_paired_errors_are_pooled_where_every_seed_has_one(store: str, tmp_path: Path) -> None:
    result = compare("within", store, tmp_path)
    by_arm = {d.arm: d for d in result.paired}
    three, five = by_arm["guidance.scale=3.0"], by_arm["guidance.scale=5.0"]
    assert three.difference == pytest.approx(0.1) and three.n_seeds == 2
    assert three.se_within == pytest.approx((0.01 + 0.02) / 2)  # shared prompts and noise: no 1/sqrt(n)
    assert math.isnan(five.se_within)  # seed 1's scale-5 run was paired with another run
    assert f"[run ± {three.se_within:.2g}]" in (tmp_path / "comparison.md").read_text()
    assert "paired/attr_acc/judge/mean" not in result.metrics


def test_single_seed_paired_differences_have_no_error_bar(store: str, tmp_path: Path) -> None:
    result = compare("hires", store, tmp_path)
    assert str(result.baseline) == "hires.strength=0.3"
    fid = [d for d in result.paired if d.metric == "fid/judge"]
    assert [(d.arm, d.difference, d.n_seeds) for d in fid] == [
        ("hires.strength=0.5", pytest.approx(-0.2), 1), ("hires.strength=0.7", pytest.approx(-0.4), 1),
    ]
    assert all(math.isnan(d.se) for d in fid)
    assert "| hires.strength=0.5 | 1 | -0.2 (1 seed) |" in (tmp_path / "comparison.md").read_text()


def test_arms_pool_seeds_with_both_standard_errors(store: str, tmp_path: Path) -> None:
    result = compare("samplers", store, tmp_path)
    assert result.varying == ["sampler.name", "sampler.steps"]
    assert [a.label for a in result.arms] == [
        "sampler.name=ddim, sampler.steps=5", "sampler.name=ddim, sampler.steps=10",
        "sampler.name=heun, sampler.steps=5", "sampler.name=heun, sampler.steps=10",
    ]
    assert result.metrics == ["fid/judge", "clip_score/judge"]

    with open(tmp_path / "comparison.csv") as f:
        rows = {r["arm"]: r for r in csv.DictReader(f)}
    row = rows["sampler.name=heun, sampler.steps=10"]
    fids = np.array([8.0 - 2 + 0.5 * seed for seed in range(3)])
    assert float(row["fid/judge:mean"]) == pytest.approx(fids.mean())
    assert float(row["fid/judge:se_seeds"]) == pytest.approx(fids.std(ddof=1) / math.sqrt(3))
    boot = [0.4 * (seed + 1) / (2 * Z95) for seed in range(3)]  # interval width / (2 z) per run
    # The runs are scored on the same items: their sampling errors do not average out over seeds.
    assert float(row["fid/judge:se_boot"]) == pytest.approx(sum(boot) / 3)
    assert float(row["clip_score/judge:se_boot"]) == pytest.approx(0.1)
    assert float(row["nfe"]) == 20 and row["n_seeds"] == "3" and row["single_seed"] == "False"

    names = {p.name for p in result.files}
    assert {"comparison.md", "comparison.csv", "pareto.png", "metric_vs_nfe.png", "paired.png"} <= names  # paired
    assert str(result.baseline) == "sampler.name=ddim"  # a categorical factor
    assert "metric_vs_hires_strength.png" not in names
    assert "single seed" not in (tmp_path / "comparison.md").read_text()


def test_single_seed_arms_and_failed_runs_are_called_out(store: str, tmp_path: Path) -> None:
    result = compare("hires", store, tmp_path)
    assert [a.factors["hires.strength"] for a in result.arms] == ["0.3", "0.5", "0.7"]
    assert all(a.single_seed and math.isnan(a.metrics["fid/judge"].se_seeds) for a in result.arms)
    assert result.metrics == ["fid/judge", "clip_score/judge", "base/fid/judge"]
    assert [f.error for f in result.failed] == ["NonFiniteLossError: inf"]
    text = (tmp_path / "comparison.md").read_text()
    assert "3 of 3 arm(s) have a single seed" in text and "± n/a" in text
    assert "## Unfinished training runs" in text and "optim.lr=1e+30" in text and "NonFiniteLossError: inf" in text
    assert (tmp_path / "metric_vs_hires_strength.png").read_bytes()[:4] == b"\x89PNG"


def test_seed_repeats_sharing_one_domain_clip_are_called_out(store: str, tmp_path: Path) -> None:
    compare("encoder_fixed", store, tmp_path / "fixed")
    assert "share one domain-CLIP text encoder (`text_encoder.seed=0`)" in (tmp_path / "fixed" / "comparison.md").read_text()
    for experiment in ("encoder_redrawn", "samplers"):  # redrawn with the seed; no domain CLIP recorded
        compare(experiment, store, tmp_path / experiment)
        assert "domain-CLIP" not in (tmp_path / experiment / "comparison.md").read_text()


def test_arms_scored_by_different_judges_are_called_out(store: str, tmp_path: Path) -> None:
    compare("judges", store, tmp_path / "judges")
    text = (tmp_path / "judges" / "comparison.md").read_text()
    assert ("come from 2 different judges (`aaaaaaaaaaaa` scored 1 arm(s), e.g. *eval.judge.seed=1*; "
            "`bbbbbbbbbbbb` scored 1 arm(s), e.g. *eval.judge.seed=2*)") in text
    for experiment in ("encoder_fixed", "samplers"):  # one judge; no judge recorded
        compare(experiment, store, tmp_path / experiment)
        assert "different judges" not in (tmp_path / experiment / "comparison.md").read_text()


def test_cli_names_a_missing_experiment_and_the_ones_there(store: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["nope", "--tracking-uri", store])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "no MLflow experiment 'nope'" in error and "hires" in error and "samplers" in error


def test_cli_without_a_store_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["anything"])
    assert f"no MLflow store at {tmp_path / 'mlflow.db'}" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()


def test_headline_metrics_include_accuracy_means_faithful_diversity_open_clip_scores_and_both_readings() -> None:
    names = ["fid/judge", "fid/judge/ci_low", "attr_acc/judge/mean", "attr_acc/judge/color", "diversity/judge",
             "diversity/judge/se", "diversity/judge/faithful", "diversity/judge/faithful/se", "diversity/judge/data",
             "base/diversity/judge/faithful", "cost/nfe", "noise_share", "noise_share/se", "base/noise_share",
             "patch_fid", "patch_fid/ci_low", "base/patch_fid", "paired/patch_fid", "paired/fid/judge",
             "clip_score/ViT-B-32/openai", "clip_score/ViT-B-32/openai/se", "diversity/ViT-B-32/openai",
             "attr_acc/rule/mean", "attr_acc/rule/color", "judge_agreement/position"]
    assert [n for n in names if is_headline(n)] == [
        "fid/judge", "attr_acc/judge/mean", "diversity/judge", "diversity/judge/faithful", "base/diversity/judge/faithful",
        "noise_share", "base/noise_share", "patch_fid", "base/patch_fid", "clip_score/ViT-B-32/openai",
        "diversity/ViT-B-32/openai", "attr_acc/rule/mean", "judge_agreement/position",
    ]


def test_arms_scored_by_an_unreliable_judge_or_making_noise_are_flagged(tmp_path: Path) -> None:
    """Guidance 1 scored by a judge that failed its real-image check and making mostly noise;
    guidance 3 scored by a judge that passed: only the first is flagged, its judge cells marked †."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("flags")
    log_training(client, experiment, {"seed": 0}, [
        ({"guidance.scale": 1.0}, {"fid/judge": 2.0, "noise_share": 0.9, "judge_validity/retrieval_top1": 0.3,
                                   "judge_validity/reliable": 0.0}),
        ({"guidance.scale": 3.0}, {"fid/judge": 1.0, "noise_share": 0.0, "judge_validity/retrieval_top1": 0.9,
                                   "judge_validity/reliable": 1.0}),
    ])
    result = compare("flags", uri, tmp_path / "cmp")
    assert "judge_validity/reliable" not in result.metrics  # a check, not a headline metric
    text = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "**Warning:** in 1 arm(s) the judge failed its validity check on real images" in text
    assert "**Warning:** 1 arm(s) make mostly noise images (noise_share: *guidance.scale=1.0* 90%)" in text
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| guidance")}
    assert "2 ± n/a †" in rows["guidance.scale=1.0"] and "†" not in rows["guidance.scale=3.0"]


def test_arms_whose_judge_disagrees_with_the_rule_reader_are_named() -> None:
    from sweeps.aggregate import Arm, Estimate, disagreeing_judge_arms

    agreeing = Arm({"guidance.scale": "3"}, "guidance.scale=3", ["0"], 1,
                   metrics={"judge_agreement/position": Estimate(0.99, math.nan, math.nan, 1)})
    disagreeing = Arm({"guidance.scale": "1"}, "guidance.scale=1", ["0"], 1,
                      metrics={"judge_agreement/position": Estimate(0.93, math.nan, math.nan, 1),
                               "judge_agreement/color": Estimate(0.97, math.nan, math.nan, 1)})
    assert disagreeing_judge_arms([agreeing, disagreeing]) == [("guidance.scale=1", "position", 0.93)]
    disagreeing.metrics["attr_acc/judge/mean"] = Estimate(0.9, math.nan, math.nan, 1)
    agreeing.metrics["attr_acc/judge/mean"] = Estimate(0.95, math.nan, math.nan, 1)
    text = markdown("cfg", "sqlite:///x", [agreeing, disagreeing], [], ["attr_acc/judge/mean"], [], "seed")
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| guidance")}
    assert "0.9 ± n/a †" in rows["| guidance.scale=1"] and "†" not in rows["| guidance.scale=3"]
    assert "judge agrees with the rule reader on too few generated images (*guidance.scale=1* position 0.930" in text
