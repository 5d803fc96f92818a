"""Quality per cost of a trained model: attribute accuracy and FID/judge against NFE, per sampler.

    python -m benchmarks.quality --ckpt outputs/cfg_sweep/<run>/export [--steps 10,20,50,250]

Generation and scoring are the code users run: the settings are an ``eval.grid`` over
``sampler`` x ``steps`` composed from ``conf/eval.yaml``, and every setting goes through
:meth:`mjexp.runs.eval_run.grid_evaluation.GridEvaluation.evaluate_setting` (same prompts, same per-item noise, the
judge, resumable generation folders under ``--out``). On top of the report it checks the claim
of issue 7: DPM-Solver++(2M) at 20 NFE is not worse than the best 250-step result by more than
two paired standard errors (paired over identical prompts and noise), both in mean per-image
attribute accuracy (:func:`evaluation.paired_difference`) and in FID/judge
(:func:`evaluation.bootstrap.fid_difference`). ``--challengers dpmpp_2m:20,dpmpp_2m_sde:20`` runs
the same check for more settings.

Without a prompt set that carries attributes (``evaluation/prompts``), one is written from the
checkpoint's data vocabulary (every caption combination, shuffled with a fixed seed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
DEFAULT_SAMPLERS = ("ddim", "ddpm", "euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde")
REFERENCE_STEPS = 250
CHALLENGER = ("dpmpp_2m", 20)  # the claim of issue 7; --challengers checks others the same way
TOLERANCE_SE = 2.0


def compose_eval_config(ckpt: str, out: Path, overrides: Sequence[str]) -> Any:
    """``conf/eval.yaml`` with the given overrides (what ``python -m mjexp.eval`` would compose)."""
    from hydra import compose, initialize_config_dir

    from mjexp.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("eval", overrides=[f"ckpt={ckpt}", f"output_dir={out}", *overrides])


def write_prompt_set(data_cfg: dict[str, Any], folder: Path, n: int, seed: int = 0) -> Path:
    """A prompt set (``.jsonl`` + ``.meta.json``) of ``n`` caption combinations of the data's schema."""
    from omegaconf import OmegaConf

    from mjexp.runs.components import build_datamodule

    schema = build_datamodule(OmegaConf.create(data_cfg)).schema
    rows = [{"prompt": schema.caption(attrs), "attrs": attrs} for attrs in schema.combinations()]
    random.Random(seed).shuffle(rows)
    rows = rows[:n] if n else rows
    text = "\n".join(json.dumps(row) for row in rows) + "\n"
    name = "quality_" + hashlib.sha256(text.encode()).hexdigest()[:8]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.jsonl").write_text(text)
    meta = {"version": "1", "caption_template": schema.template, "attribute_values": schema.attribute_values()}
    (folder / f"{name}.meta.json").write_text(json.dumps(meta, indent=2))
    return folder / f"{name}.jsonl"


def ensure_prompt_set(name: str | None, ckpt: str, folder: Path, n: int) -> str:
    """The prompt set to use: ``name`` if it loads, else one written from the checkpoint's data."""
    from evaluation import load_prompt_set
    from mjexp.runs.models import load_model

    if name is not None:
        load_prompt_set(name)  # fail now, naming the file, if it is missing
        return name
    data_cfg = load_model(ckpt).config["data"]
    return str(write_prompt_set(data_cfg, folder, n))


def paired_check(
    records: list[dict[str, Any]],
    flags: list[np.ndarray],
    features: list[Any] | None = None,
    reference: Any = None,
    replicates: int = 200,
    feature_rank: int | None = None,
    challenger_setting: tuple[str, int] = CHALLENGER,
) -> dict[str, Any]:
    """A sampler at a step count (the claim: DPM++(2M) at 20 NFE) against the best 250-step
    setting, in paired standard errors: mean per-image attribute accuracy
    (:func:`evaluation.paired_difference`) and, given each setting's judge features and the
    reference features, FID/judge (:func:`evaluation.bootstrap.fid_difference`, the same items
    resampled in both arms)."""
    from evaluation import paired_difference
    from evaluation.bootstrap import fid_difference

    index = {(r["sampler"], r["steps"]): i for i, r in enumerate(records)}
    reference_steps = [i for (name, steps), i in index.items() if steps == REFERENCE_STEPS]
    if challenger_setting not in index or not reference_steps:
        name, steps = challenger_setting
        return {"verdict": f"not checked: needs {name} at {steps} steps and a {REFERENCE_STEPS}-step setting"}
    challenger = index[challenger_setting]
    label = records[challenger]["label"]
    checks = []
    best = max(reference_steps, key=lambda i: flags[i].mean())
    diff, se = paired_difference(flags[challenger], flags[best])
    checks.append({"metric": "mean attribute accuracy", "best_reference": records[best]["label"],
                   "difference": diff, "standard_error": se, "passed": bool(diff >= -TOLERANCE_SE * se)})
    if features is not None and reference is not None:
        best = min(reference_steps, key=lambda i: records[i]["metrics"]["fid/judge"])
        paired = fid_difference(features[challenger], features[best], reference, replicates, feature_rank=feature_rank)
        diff, se = paired.difference, paired.standard_error
        checks.append({"metric": "FID/judge", "best_reference": records[best]["label"],
                       "difference": diff, "standard_error": se, "passed": bool(diff <= TOLERANCE_SE * se)})
    lines = [
        f"{label} minus best {REFERENCE_STEPS}-step ({c['best_reference']}): {c['metric']} "
        f"{c['difference']:+.4f} +- {c['standard_error']:.4f} (paired SE): " + ("PASS" if c["passed"] else "FAIL")
        + f" (threshold {TOLERANCE_SE:g} SE {'below' if c['metric'] != 'FID/judge' else 'above'})"
        for c in checks
    ]
    return {"challenger": label, "checks": checks, "passed": all(c["passed"] for c in checks), "verdict": "; ".join(lines)}


def parse_challengers(text: str) -> list[tuple[str, int]]:
    """``"dpmpp_2m:20,dpmpp_2m_sde:20"`` -> ``[("dpmpp_2m", 20), ("dpmpp_2m_sde", 20)]``."""
    settings = []
    for item in filter(None, text.split(",")):
        name, _, steps = item.partition(":")
        if not steps.isdigit():
            raise ValueError(f"--challengers wants sampler:steps items, got {item!r}")
        settings.append((name, int(steps)))
    return settings


def quality_table(records: list[dict[str, Any]], flags: list[np.ndarray]) -> str:
    lines = [
        "| sampler | steps | NFE | mean attribute accuracy (SE) | FID/judge [95% CI] | diversity, faithful images (SE) | images/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for record, own in sorted(zip(records, flags), key=lambda pair: (pair[0]["sampler"], pair[0]["steps"])):
        m = record["metrics"]
        se = own.std(ddof=1) / np.sqrt(own.size)
        fid = m.get("fid/judge", float("nan"))
        speed = record["costs"]["images_per_second"]
        speed_text = f"{speed:.3g}" if np.isfinite(speed) else "resumed"
        ci = f" [{m.get('fid/judge/ci_low', float('nan')):.3g}, {m.get('fid/judge/ci_high', float('nan')):.3g}]"
        diversity = m.get("diversity/judge/faithful", float("nan"))
        diversity_se = m.get("diversity/judge/faithful/se", float("nan"))
        lines.append(
            f"| {record['sampler']} | {record['steps']} | {record['nfe']} | {own.mean():.4f} ({se:.4f}) | "
            f"{fid:.4g}{ci if 'fid/judge/ci_low' in m else ''} | {diversity:.4f} ({diversity_se:.4f}) | {speed_text} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="export folder, Lightning .ckpt or mlflow:<run_id>")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/quality"))
    parser.add_argument("--samplers", default=",".join(DEFAULT_SAMPLERS))
    parser.add_argument("--steps", default="10,20,50,250")
    parser.add_argument("--prompt-set", default=None, help="a set in evaluation/prompts or a .jsonl; default: "
                        "written from the checkpoint's data vocabulary")
    parser.add_argument("--prompts", type=int, default=192, help="prompts (each sampled --samples times)")
    parser.add_argument("--samples", type=int, default=1, help="samples per prompt")
    parser.add_argument("--batch-size", type=int, default=192)
    parser.add_argument("--override", action="append", default=[], help="extra eval config override (repeatable)")
    parser.add_argument("--record", type=Path, default=None, help="Markdown file to append the results to")
    parser.add_argument("--challengers", default=":".join(map(str, CHALLENGER)),
                        help="comma-separated sampler:steps settings each checked against the best "
                             f"{REFERENCE_STEPS}-step result (default: the claim, {CHALLENGER[0]}:{CHALLENGER[1]})")
    args = parser.parse_args(argv)

    from mjexp.runs.eval_run.grid_evaluation import GridEvaluation, apply_overrides, setting_label
    from mjexp.runs.eval_run.table import print_table
    from evaluation.metrics import PairingSettings, add_paired_comparisons
    from evaluation.metrics.attribute_accuracy import AttributeAccuracyMetric
    from evaluation.metrics.fid_kid import FidKid
    from evaluation.metrics.prompt_diversity import PromptDiversity
    from mjexp.runs.tracker import open_tracker
    from mjexp.runs.log_noise import quiet_third_party_logs

    quiet_third_party_logs()  # Lightning's per-setting banner and tip; warnings still print

    samplers = [s for s in args.samplers.split(",") if s]
    steps = [int(s) for s in args.steps.split(",") if s]
    args.out.mkdir(parents=True, exist_ok=True)
    prompt_set = ensure_prompt_set(args.prompt_set, args.ckpt, args.out / "prompts", args.prompts)
    overrides = [
        f"eval.grid={{sampler:[{','.join(samplers)}],steps:[{','.join(map(str, steps))}]}}",
        f"eval.prompt_set={prompt_set}", f"eval.max_prompts={args.prompts}",
        f"eval.samples_per_prompt={args.samples}", f"eval.batch_size={args.batch_size}",
        "eval.progress_bar=false", "tracking.enabled=false", *args.override,
    ]
    cfg = compose_eval_config(args.ckpt, args.out, overrides)
    evaluation = GridEvaluation(cfg, args.ckpt, open_tracker(cfg, args.out, None), args.out)
    records, flags, features, states = [], [], [], []
    for number, setting in enumerate(evaluation.settings, 1):
        label = setting_label(setting)
        print(f"[{number}/{len(evaluation.settings)}] {label}", flush=True)
        outcome = evaluation.evaluate_setting(apply_overrides(cfg, setting), label, setting)
        if outcome.states.get(AttributeAccuracyMetric.name) is None:
            raise ValueError(f"prompt set {prompt_set} gave no attribute accuracy; it needs attrs and a template")
        records.append(outcome.record)
        flags.append(outcome.states[AttributeAccuracyMetric.name])
        judge_features = outcome.states.get(FidKid.name, {}).get("judge")
        features.append(judge_features[0] if judge_features else None)
        # The paired tests of attribute accuracy and diversity (FID's follows in paired_check).
        states.append({name: outcome.states.get(name) for name in (AttributeAccuracyMetric.name, PromptDiversity.name)})
    add_paired_comparisons(records, states, PairingSettings(cfg.eval.bootstrap, cfg.eval.seed, cfg.eval.device))
    print_table(records)
    judge_reference = evaluation.context.reference.features.get("judge")
    have_fid = judge_reference is not None and all(f is not None for f in features)
    checks = [
        paired_check(records, flags, features if have_fid else None,
                     judge_reference.features if have_fid else None, cfg.eval.bootstrap,
                     evaluation.context.scorer.plan.extractors["judge"].feature_rank if have_fid else None,
                     challenger)
        for challenger in parse_challengers(args.challengers)
    ]
    table = quality_table(records, flags)
    (args.out / "quality.json").write_text(json.dumps({"records": records, "checks": checks}, indent=2, default=str))
    command = "python -m benchmarks.quality " + " ".join(sys.argv[1:] if argv is None else argv)
    section = "\n".join([
        f"### Quality per cost: {args.ckpt}", "", f"- command: `{command}`",
        f"- prompts: {prompt_set}, {args.prompts} prompts x {args.samples} samples, guidance "
        f"{cfg.guidance.scale}, same prompts and per-item noise in every setting",
        "", table, "", *(f"- {check['verdict']}" for check in checks), "",
    ])
    print(section)
    if args.record is not None:
        with open(args.record, "a", encoding="utf-8") as f:
            f.write("\n" + section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
