"""``python -m sweeps.compare EXPERIMENT``: the runs of an MLflow experiment as one comparison.

Reads the experiment from the local SQLite store (``mlflow.db`` in the current folder, as
``mjexp.train`` writes it) or any ``--tracking-uri`` (``http://host:5000``), groups runs into arms
(:mod:`sweeps.runs`: training overrides except the seed, plus the evaluated setting), and writes to
``--out`` (default ``comparisons/<EXPERIMENT>/``):

* ``comparison.md`` and ``comparison.csv``: one row per arm, each metric's mean with its standard
  error over seeds and its within-run bootstrap SE (:mod:`sweeps.aggregate`), and cost columns
  (wall time of the training run, generation seconds, images/s, nfe); arms with a single seed are
  flagged; unfinished training runs are listed with their errors; runs of one seed are averaged
  before pooling (they are one draw of the training randomness);
* ``paired.csv`` and a section of ``comparison.md``: each arm minus its baseline arm seed by seed
  (:mod:`sweeps.paired`; ``--baseline KEY=VALUE``, default the first varying sampling setting at
  its first value), whose error bar leaves out what the two arms' runs of one seed share;
* ``paired.png``: the paired differences along the baseline's factor;
* ``pareto.png`` (FID vs CLIP score per schedule / sampler / guidance variant),
  ``metric_vs_nfe.png`` and ``metric_vs_hires_strength.png`` where those factors vary.
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from evaluation.settings import ScoringConfig
from mjexp.runs.command import reports_user_errors
from mjexp.tracking.mlflow import (
    configure_sqlite_busy_timeout,
    resolve_tracking_uri,
    sqlite_path,
)
from sweeps.aggregate import (
    Arm,
    Estimate,
    disagreeing_judge_arms,
    fixed_encoder_seeds,
    group_arms,
    headline_metrics,
    judges_of_arms,
    noisy_arms,
    unreliable_judge_arms,
    varying_factors,
)
from sweeps.figures import comparison_plots, paired_plot
from sweeps.paired import (
    Baseline,
    PairedDifference,
    default_baseline,
    paired_differences,
    parse_baseline,
)
from sweeps.runs import FailedRun, measurements_from_runs, search_all_runs

COST_COLUMNS = {
    "run_wall_s": "run wall s",
    "generation_s": "generation s",
    "images_per_s": "images/s",
    "nfe": "nfe",
}


@dataclass
class Comparison:
    """What one comparison produced (the files, and the arms behind them)."""

    arms: list[Arm]
    failed: list[FailedRun]
    varying: list[str]
    metrics: list[str]
    files: list[Path]
    baseline: Baseline | None
    paired: list[PairedDifference]


def pick_metric(names: Sequence[str], family: str) -> str | None:
    """``family/<model>`` for the plots: a standard model's if logged, else the domain judge's."""
    candidates = [n for n in names if n.startswith(family + "/") and not n.endswith("/faithful")]
    standard = [n for n in candidates if not n.endswith("/judge")]
    return (standard or candidates or [None])[0]


def format_estimate(e: Estimate | None) -> str:
    if e is None:
        return ""
    seeds = f"± {e.se_seeds:.2g}" if math.isfinite(e.se_seeds) else "± n/a"
    boot = f" [boot ± {e.se_boot:.2g}]" if math.isfinite(e.se_boot) else ""
    return f"{e.mean:.4g} {seeds}{boot}"


def format_cost(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


def format_paired(d: PairedDifference | None) -> str:
    if d is None:
        return ""
    within = f" [run ± {d.se_within:.2g}]" if math.isfinite(d.se_within) else ""
    if d.n_seeds < 2:
        return f"{d.difference:+.4g} (1 seed){within}"
    return f"{d.difference:+.4g} ± {d.se:.2g} [{d.ci_low:+.3g}, {d.ci_high:+.3g}]{within}"


def write_paired_csv(paired: Sequence[PairedDifference], path: Path) -> Path:
    header = ["arm", "baseline_arm", "metric", "difference", "se_seeds", "n_seeds", "ci_low", "ci_high", "se_within_run"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for d in paired:
            writer.writerow([d.arm, d.baseline, d.metric, d.difference, d.se, d.n_seeds, d.ci_low, d.ci_high,
                             d.se_within])
    return path


def paired_section(
    baseline: Baseline | None, paired: Sequence[PairedDifference], metrics: Sequence[str], replicate_key: str
) -> list[str]:
    """The paired table of ``comparison.md`` (nothing when no arm has a baseline arm)."""
    if baseline is None or not paired:
        return []
    lines = [
        "", f"## Paired with `{baseline}`", "",
        f"Each arm minus the arm that differs from it only in `{baseline.key}` (set to {baseline.value}), "
        f"{replicate_key} by {replicate_key}: mean ± standard error over {replicate_key}s [95% Student-t interval]. "
        "Runs of one seed share what a seed fixes (one training run, when only sampling settings differ), so "
        "this error bar is usually far smaller than the table's above; one shared seed gives none. "
        "[run ± SE]: where both settings were evaluated in one `mjexp.eval` run, the SE of its image-by-image "
        "paired tests (the evaluation's sampling error only, without training randomness). "
        "`--baseline KEY=VALUE` picks another baseline.",
        "",
    ]
    header = ["arm", "paired seeds", *metrics]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    cells: dict[str, dict[str, PairedDifference]] = {}
    for d in paired:
        cells.setdefault(d.arm, {})[d.metric] = d
    for arm, by_metric in cells.items():
        seeds = max(d.n_seeds for d in by_metric.values())
        lines.append("| " + " | ".join([arm, str(seeds), *[format_paired(by_metric.get(m)) for m in metrics]]) + " |")
    return lines


def write_csv(arms: Sequence[Arm], varying: Sequence[str], metrics: Sequence[str], path: Path) -> Path:
    header = ["arm", *varying, "n_seeds", "single_seed", "seeds"]
    for m in metrics:
        header += [f"{m}:mean", f"{m}:se_seeds", f"{m}:se_boot"]
    header += list(COST_COLUMNS)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for arm in arms:
            row: list[object] = [arm.label, *[arm.factors.get(k, "") for k in varying]]
            row += [len(arm.replicates), arm.single_seed, " ".join(str(r) for r in arm.replicates)]
            for m in metrics:
                e = arm.metrics.get(m)
                row += [e.mean, e.se_seeds, e.se_boot] if e else ["", "", ""]
            row += [arm.costs.get(c, "") for c in COST_COLUMNS]
            writer.writerow(row)
    return path


def markdown(
    experiment: str, uri: str, arms: Sequence[Arm], failed: Sequence[FailedRun], metrics: Sequence[str],
    plots: Sequence[Path], replicate_key: str, fixed_encoder: set[str] = frozenset(),
    judges: dict[str, list[str]] | None = None, baseline: Baseline | None = None,
    paired: Sequence[PairedDifference] = (),
) -> str:
    single = [a for a in arms if a.single_seed]
    rerun = [a for a in arms if a.runs > len(a.replicates)]
    lines = [
        f"# Comparison: {experiment}",
        "",
        f"MLflow store `{uri}`: {len(arms)} arm(s), {len(failed)} unfinished (failed, killed or running) training run(s). "
        f"Arms differ in the columns of their label; repeats over `{replicate_key}` are pooled.",
        "",
        "Each cell: mean ± standard error over seeds [boot ± the runs' bootstrap standard error, their mean: "
        "runs scored on the same prompts and noise share it, so it does not shrink with seeds].",
    ]
    if single:
        lines += [
            "",
            f"**Note:** {len(single)} of {len(arms)} arm(s) have a single seed, so they have no "
            f"seed-to-seed error (`± n/a`); only the bootstrap SE over images, which ignores training "
            f"randomness. Repeat the training with `{replicate_key}=0,1,2` for honest error bars.",
        ]
    if rerun:
        lines += [
            "",
            f"**Note:** {len(rerun)} arm(s) hold more runs than distinct `{replicate_key}` values (e.g. "
            f"*{rerun[0].label}*: {rerun[0].runs} runs of {len(rerun[0].replicates)} seed(s)). Runs of one seed "
            "are averaged first, as they share its initialisation, data order and noise; `seeds` counts "
            "distinct seeds.",
        ]
    if fixed_encoder and replicate_key != "text_encoder.seed":
        seeds = ", ".join(f"`text_encoder.seed={seed}`" for seed in sorted(fixed_encoder))
        lines += [
            "",
            f"**Note:** the repeats over `{replicate_key}` share one domain-CLIP text encoder ({seeds}), "
            "so the seed errors cover the diffusion model's randomness only, not the encoder's draw "
            "(which can matter as much; docs/results/2026-11-26-caption-noise-and-encoder.md). Repeat with "
            "`'text_encoder.seed=${seed}'` to redraw the encoder with each seed, and keep `eval.judge.seed` "
            "out of the swept seeds (docs/evaluation.md, judge independence).",
        ]
    if judges and len(judges) > 1:
        scored = "; ".join(
            f"`{sha[:12]}` scored {len(labels)} arm(s), e.g. *{labels[0]}*" for sha, labels in judges.items()
        )
        lines += [
            "",
            f"**Note:** the judge metrics come from {len(judges)} different judges ({scored}). Each judge "
            "reads the same images at its own level (docs/evaluation.md, judge independence), so compare arms "
            "scored by one judge.",
        ]
    unreliable = set(unreliable_judge_arms(arms))
    if unreliable:
        lines += [
            "",
            f"**Warning:** in {len(unreliable)} arm(s) the judge failed its validity check on real images (attribute "
            "accuracy or caption retrieval below its threshold; the run's report.html says which): their judge "
            "metrics are marked † and are not to be trusted.",
        ]
    disagreeing = disagreeing_judge_arms(arms)
    if disagreeing:
        listed = "; ".join(f"*{label}* {attribute} {value:.3f}" for label, attribute, value in disagreeing)
        lines += [
            "",
            f"**Warning:** the judge agrees with the rule reader on too few generated images ({listed}; threshold "
            f"{ScoringConfig.validity_threshold}): its attr_acc/judge numbers for those attributes (and their mean) "
            "are marked † and not to be trusted there; read attr_acc/rule.",
        ]
    noisy = noisy_arms(arms)
    if noisy:
        listed = "; ".join(f"*{label}* {share:.0%}" for label, share in noisy)
        lines += [
            "",
            f"**Warning:** {len(noisy)} arm(s) make mostly noise images (noise_share: {listed}): their image "
            "metrics describe noise, not the model's images.",
        ]
    header = ["arm", "seeds", *metrics, *COST_COLUMNS.values()]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for a in arms:
        seeds = f"{len(a.replicates)}" + (" (single seed)" if a.single_seed else "")
        seeds += f" ({a.runs} runs)" if a.runs > len(a.replicates) else ""
        distrusted = {f"attr_acc/judge/{attribute}" for label, attribute, _ in disagreeing if label == a.label}
        distrusted |= {"attr_acc/judge/mean"} if distrusted else set()
        dagger = a.label in unreliable
        cells = [a.label, seeds, *[format_estimate(a.metrics.get(m))
                                   + (" †" if ((dagger and "/judge" in m) or m in distrusted) and a.metrics.get(m) else "")
                                   for m in metrics]]
        cells += [format_cost(a.costs.get(c)) for c in COST_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += paired_section(baseline, paired, metrics, replicate_key)
    if failed:
        lines += ["", "## Unfinished training runs", "", "| run | status | overrides | error |", "|---|---|---|---|"]
        for f in failed:
            overrides = " ".join(f"{k}={v}" for k, v in f.factors.items())
            error = f.error.replace("\n", " ").replace("|", "\\|")
            lines.append(f"| {f.run_name} ({f.run_id[:8]}) | {f.status} | {overrides} | {error} |")
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def compare(
    experiment: str,
    tracking_uri: str | None = None,
    out_dir: str | Path | None = None,
    metrics: Sequence[str] | None = None,
    replicate_key: str = "seed",
    filter_string: str = "",
    baseline: str | None = None,
) -> Comparison:
    """Write the comparison of ``experiment``'s runs; see the module docstring."""
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(tracking_uri, Path.cwd())
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise FileNotFoundError(
            f"no MLflow store at {db}: run from the folder training was launched in, or pass --tracking-uri"
        )
    configure_sqlite_busy_timeout()
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ValueError(f"no MLflow experiment {experiment!r} in {uri}; experiments there: {', '.join(names) or 'none'}")
    runs = search_all_runs(client, found.experiment_id)
    keep = {r.info.run_id for r in search_all_runs(client, found.experiment_id, filter_string)} if filter_string else None
    measurements, failed = measurements_from_runs(runs, replicate_key, keep)
    if not measurements and not failed:
        matching = f" matching {filter_string!r}" if filter_string else ""
        raise ValueError(f"experiment {experiment!r} has no training runs{matching}")
    metrics = list(metrics) if metrics else headline_metrics(measurements)
    arms = group_arms(measurements, metrics)
    varying = varying_factors(measurements)
    chosen = (parse_baseline(baseline, arms, varying) if baseline
              else default_baseline(arms, varying, {k for m in measurements for k in m.setting}))
    paired = paired_differences(arms, metrics, chosen) if chosen else []
    out = Path(out_dir) if out_dir else Path("comparisons") / experiment
    out.mkdir(parents=True, exist_ok=True)
    plots = comparison_plots(arms, varying, pick_metric(metrics, "fid"), pick_metric(metrics, "clip_score"), out)
    if paired:
        plots += [p for p in [paired_plot(arms, varying, paired, chosen, metrics, out / "paired.png")] if p]
    table = out / "comparison.md"
    fixed_encoder = fixed_encoder_seeds(measurements)
    table.write_text(
        markdown(
            experiment, uri, arms, failed, metrics, plots, replicate_key, fixed_encoder,
            judges_of_arms(arms, measurements), chosen, paired,
        ),
        encoding="utf-8",
    )
    files = [table, write_csv(arms, varying, metrics, out / "comparison.csv")]
    if paired:
        files.append(write_paired_csv(paired, out / "paired.csv"))
    return Comparison(arms, failed, varying, metrics, files + plots, chosen, paired)


@reports_user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sweeps.compare", description=__doc__.splitlines()[0])
    parser.add_argument("experiment", help="MLflow experiment name (an experiment config's `name`)")
    parser.add_argument("--tracking-uri", help="default: sqlite:///mlflow.db in the current folder")
    parser.add_argument("--out", help="output folder (default: comparisons/<experiment>)")
    parser.add_argument("--metrics", nargs="+", help="metrics to tabulate (default: every headline metric)")
    parser.add_argument("--replicate-key", default="seed", help="the override whose repeats are pooled (default: seed)")
    parser.add_argument(
        "--filter", default="", help="MLflow filter on training runs, e.g. \"tags.`mjexp.sweep_dir` LIKE '%%01-02%%'\""
    )
    parser.add_argument(
        "--baseline", help="KEY=VALUE: pair each arm with the arm that has KEY=VALUE and its other factors "
        "(default: the first varying sampling setting at its first value)",
    )
    args = parser.parse_args(argv)
    result = compare(args.experiment, args.tracking_uri, args.out, args.metrics, args.replicate_key, args.filter,
                     args.baseline)
    print(result.files[0].read_text(encoding="utf-8"))
    print("Wrote " + ", ".join(str(p) for p in result.files))


if __name__ == "__main__":
    main()
