"""What ``sampler.noise=brownian`` costs: step-noise time per item and step, next to the network.

    python -m benchmarks.step_noise [--batch 64] [--steps 20] [--repeats 5]

For each U-Net preset's image size it times, on the CPU, drawing one 20-step grid's step noise
for a batch with independent draws and with Brownian-path increments, and one CFG forward of
that preset (cond and uncond in one batch of 2B) for scale: a sampler step costs one forward
plus one draw. Medians of interleaved repetitions; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Sequence

import torch

from benchmarks.harness import interleaved
from benchmarks.networks import PRESET_RESOLUTION, make_inputs, our_call, preset_spec
from mjexp.diffusion.schedules import NoiseSchedule, ScheduleSettings
from mjexp.diffusion.unet import UNet
from mjexp.sampling.noise import ItemNoise
from mjexp.sampling.samplers import SamplerSettings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--presets", default="tiny,small")
    args = parser.parse_args(argv)
    cpu = torch.device("cpu")
    schedule = NoiseSchedule(ScheduleSettings("linear", 1000, 1e-4, 0.02))
    grid = SamplerSettings("dpmpp_2m_sde", args.steps).grid(schedule).sigmas.tolist()
    print(f"{torch.get_num_threads()} threads; batch {args.batch}; {args.steps}-step grid; ms per item and step (median)")
    print("| preset | item shape | independent noise | brownian noise | CFG network forward |")
    print("|---|---|---|---|---|")
    for preset in [p for p in args.presets.split(",") if p]:
        resolution = PRESET_RESOLUTION[preset]
        noise = ItemNoise.for_prompts(0, range(args.batch), 1, (3, resolution, resolution))
        unet = UNet(preset_spec(preset)).eval()
        inputs = make_inputs(2 * args.batch, resolution, cpu)

        def draw(kind: str) -> None:
            source = noise.steps(grid, kind)  # type: ignore[arg-type]
            for k in range(args.steps - 1):  # the step into sigma = 0 draws no noise
                source(k)

        def forward() -> None:
            with torch.inference_mode():
                our_call(unet, inputs)

        times = interleaved(
            {"independent": lambda: draw("independent"), "brownian": lambda: draw("brownian"), "forward": forward},
            args.repeats, 1, cpu,
        )
        per_item = {name: 1e3 * statistics.median(values) / args.batch for name, values in times.items()}
        noise_steps = args.steps - 1
        print(f"| {preset} | 3x{resolution}x{resolution} | {per_item['independent'] / noise_steps:.3f} | "
              f"{per_item['brownian'] / noise_steps:.3f} | {per_item['forward']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
