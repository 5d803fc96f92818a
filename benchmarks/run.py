"""Side-by-side performance benchmarks: ours vs diffusers / torch-fidelity, in one run.

    python -m benchmarks.run                       # all suites, record to BENCHMARKS.md
    python -m benchmarks.run --suites network --compile --channels-last
    python -m benchmarks.run --smoke               # seconds: checks the harness, not the timings

Suites (see each module's docstring for what exactly is compared):

- ``network`` (:mod:`benchmarks.networks`): our U-Net vs a diffusers ``UNet2DConditionModel`` of
  equal parameters and measured FLOPs: forward and training-step images/s, peak memory; on a GPU
  also the model FLOPs utilisation (MFU) of the ``base`` preset's bf16 training step.
- ``sampler`` (:mod:`benchmarks.sampler_loop`): ``GuidanceSampler`` vs a diffusers pipeline-style
  loop (DDIM, DPM-Solver++ 2M) driving the same network with CFG.
- ``evaluation`` (:mod:`benchmarks.fid_eval`): our features + FID vs ``torch_fidelity.calculate_metrics``.

Every measurement: same process, threads, dtype (float32 on CPU, bf16 autocast on CUDA) and
compile setting on both sides; warm-up; interleaved repetitions; the median (the range of the
repetitions in brackets). Ratios are ours / theirs. Results are printed and, unless ``--no-record``,
appended to ``BENCHMARKS.md`` under a heading with the device, versions and the exact command.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from benchmarks.harness import Comparison, Environment, markdown_table

SUITES = ("network", "sampler", "evaluation")
DEFAULT_RECORD = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
MFU_GOAL = 0.40


@dataclass(frozen=True)
class Plan:
    """What one invocation measures."""

    network: list
    sampler: list
    evaluation: list
    repeats: int
    warmup: int


def plan_for(args: argparse.Namespace, device: torch.device) -> Plan:
    from benchmarks.fid_eval import FidCase
    from benchmarks.networks import NetworkCase
    from benchmarks.sampler_loop import LoopCase

    cl = args.channels_last
    if args.smoke:
        return Plan(
            network=[NetworkCase("tiny", forward_batch=2, train_batch=2, channels_last=cl)],
            sampler=[LoopCase("dpmpp_2m", steps=2, batch=2)],
            evaluation=[FidCase(n=4, layer="64", batch_size=4)],
            repeats=1,
            warmup=0,
        )
    if device.type == "cuda":
        network = [NetworkCase("tiny", 1024, 256, cl), NetworkCase("small", 256, 128, cl),
                   NetworkCase("base", 128, 64, cl)]
        sampler = [LoopCase(name, 20, batch, preset, graphs) for preset in ("tiny", "base")
                   for name in ("ddim", "dpmpp_2m") for batch in (4, 64) for graphs in (False, True)]
        evaluation = [FidCase(n=1024)]
    else:
        network = [NetworkCase("tiny", 256, 64, cl), NetworkCase("small", 64, 32, cl)]
        sampler = [LoopCase(name, 20, batch) for name in ("ddim", "dpmpp_2m") for batch in (4, 64)]
        evaluation = [FidCase(n=128)]
    if args.presets:
        network = [c for c in network if c.preset in args.presets]
        sampler = [c for c in sampler if c.preset in args.presets]
    return Plan(network, sampler, evaluation, args.repeats, args.warmup)


def run(args: argparse.Namespace) -> tuple[list[Comparison], list[str]]:
    """Measure the selected suites; returns the comparisons and extra result lines (MFU)."""
    from benchmarks.fid_eval import random_inception_weights, run_fid_case
    from benchmarks.networks import run_network_case
    from benchmarks.sampler_loop import run_loop_case

    device = torch.device(args.device)
    plan = plan_for(args, device)
    rows: list[Comparison] = []
    extra: list[str] = []
    if "network" in args.suites:
        for case in plan.network:
            print(f"network: {case.label} ...", flush=True)
            case_rows, info = run_network_case(case, device, args.compile, plan.repeats, plan.warmup)
            rows += case_rows
            if case.preset == "base" and info["mfu"] is not None:
                extra.append(
                    f"MFU of the base U-Net bf16 training step (batch {case.train_batch}): {100 * info['mfu']:.1f}% "
                    f"({info['train_flops_per_step'] / 1e12:.3g} TFLOP per step; goal >= {100 * MFU_GOAL:.0f}%)"
                )
        if not any("MFU" in line for line in extra):
            extra.append("MFU of the base U-Net bf16 training step: not measured: no GPU"
                         if device.type != "cuda" else "MFU: not measured (no base case or unknown GPU peak)")
    if "sampler" in args.suites:
        for case in plan.sampler:
            print(f"sampler loop: {case.label} ...", flush=True)
            rows += run_loop_case(case, device, args.compile, plan.repeats, plan.warmup)
    if "evaluation" in args.suites:
        weights = random_inception_weights(Path(args.cache_dir) / "inception-random.pth")
        for case in plan.evaluation:
            print(f"evaluation: {case.label} ...", flush=True)
            rows += run_fid_case(case, device, weights, max(1, plan.repeats // 2), 0)
    return rows, extra


def report(rows: list[Comparison], extra: list[str], env: Environment, command: str, noise: str) -> str:
    """The Markdown section appended to BENCHMARKS.md (and printed)."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"### {stamp}: {env.device}",
        "",
        f"- command: `{command}`",
        f"- environment: {env.describe()}",
        f"- machine load: {noise}",
        "",
        markdown_table(rows, device=env.device),
        "",
        *[f"- {line}" for line in extra],
        "",
    ]
    return "\n".join(lines)


def load_average() -> str:
    try:
        with open("/proc/loadavg", encoding="utf-8") as f:
            one, five, fifteen = f.read().split()[:3]
        return f"load average {one} / {five} / {fifteen} (1 / 5 / 15 min) at the end of the run"
    except OSError:
        return "unknown"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition: checks the harness only")
    parser.add_argument("--suites", default=",".join(SUITES), help=f"comma-separated subset of {SUITES}")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads, both sides")
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions per candidate (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per candidate first")
    parser.add_argument("--presets", default="", help="only these U-Net presets (comma-separated), e.g. tiny")
    parser.add_argument("--compile", action="store_true", help="torch.compile the networks on both sides")
    parser.add_argument("--channels-last", action="store_true", help="channels-last networks on both sides")
    parser.add_argument("--record", type=Path, default=None,
                        help=f"Markdown file to append to (default {DEFAULT_RECORD.name}; none with --smoke)")
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "mjexp-benchmarks"),
                        help="where the random-init Inception weights file is kept")
    args = parser.parse_args(argv)
    args.suites = [s.strip() for s in args.suites.split(",") if s.strip()]
    args.presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown or not args.suites:
        parser.error(f"--suites {unknown or '(empty)'}: choose from {', '.join(SUITES)}")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.record is None and not args.smoke:
        args.record = DEFAULT_RECORD
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = "bf16 autocast" if device.type == "cuda" else "float32"
    env = Environment.current(device, dtype, args.compile)
    command = "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    print(env.describe(), flush=True)
    rows, extra = run(args)
    section = report(rows, extra, env, command.strip(), load_average())
    print()
    print(section)
    if args.record is not None and not args.no_record:
        with open(args.record, "a", encoding="utf-8") as f:
            f.write("\n" + section)
        print(f"appended to {args.record}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
