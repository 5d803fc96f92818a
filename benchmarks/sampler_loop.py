"""Sampler-loop suite: our ``GuidanceSampler`` against a diffusers pipeline-style loop.

Both loops drive the *same* network module (our U-Net; for diffusers' loop it is called with a
0-d timestep, as pipelines do) with classifier-free guidance as one batched cond/uncond forward,
the same text encoder, steps, batch and schedule, so only the sampling machinery differs:
per-item matched noise, sigma-space samplers and the guided denoiser on our side; ``set_timesteps``,
``scale_model_input`` and ``scheduler.step`` on theirs (``DDIMScheduler`` and
``DPMSolverMultistepScheduler``, configured like ``tests/unit/sampling/test_sampler_diffusers_parity.py``).
The diffusers loop starts from our initial noise, so its images must agree with ours; the largest
difference is reported as a check that both sides did the same work.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import torch

from benchmarks.harness import Comparison, interleaved, spread, throughput
from benchmarks.networks import PRESET_RESOLUTION, TEXT_DIM, TEXT_LENGTH, perturbed, preset_spec
from mjexp.diffusion.schedules import NoiseSchedule, ScheduleSettings
from mjexp.diffusion.unet import UNet
from mjexp.sampling.guidance import Guidance
from mjexp.sampling.guidance_sampler import GuidanceSampler
from mjexp.sampling.noise import ItemNoise
from mjexp.sampling.runtime import Runtime
from mjexp.sampling.samplers import SamplerSettings
from mjexp.text.base import TextEmbedding, TextEncoder
from mjexp.text.tiny import TinyTextEncoder

BETAS = (1e-4, 0.02)
SPACING = "trailing"
GUIDANCE_SCALE = 3.0
PROMPT_WORDS = ("red", "green", "blue", "circle", "square", "triangle", "top", "bottom", "left", "right")


def diffusers_scheduler(name: str) -> Any:
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    common = dict(num_train_timesteps=1000, beta_start=BETAS[0], beta_end=BETAS[1], beta_schedule="linear",
                  prediction_type="epsilon", timestep_spacing=SPACING)
    if name == "ddim":
        return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=True)
    if name == "dpmpp_2m":
        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2)
    raise ValueError(f"no diffusers counterpart configured for sampler {name!r}; choose ddim or dpmpp_2m")


def prompts_for(batch: int) -> list[str]:
    """``batch`` prompts, each prompt used twice (as with samples_per_prompt=2)."""
    words = PROMPT_WORDS
    return [f"a {words[i // 2 % 3]} {words[3 + i // 2 % 3]} in the {words[6 + i // 2 % 2]} {words[8 + i // 2 % 2]}"
            for i in range(batch)]


def items_for(batch: int) -> list[tuple[int, int]]:
    return [(i // 2, i % 2) for i in range(batch)]


def diffusers_loop(
    unet: torch.nn.Module,
    encoder: TextEncoder,
    scheduler: Any,
    steps: int,
    scale: float,
    prompts: list[str],
    noise: torch.Tensor,
) -> torch.Tensor:
    """The loop of diffusers' text-to-image pipelines (``StableDiffusionPipeline.__call__``)
    without the VAE: encode prompt and negative prompt once, then per step duplicate the latents,
    one forward, CFG on the network output, ``scheduler.step``."""
    device = noise.device
    text = TextEmbedding.cat([encoder.encode(prompts), encoder.null_embedding(len(prompts))]).to(device)
    scheduler.set_timesteps(steps, device=device)
    latents = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)
        cond, uncond = unet(model_input, t, text=text).chunk(2)
        guided = uncond + scale * (cond - uncond)
        latents = scheduler.step(guided, t, latents, return_dict=False)[0]
    return latents.clamp(-1, 1)


@dataclass(frozen=True)
class LoopCase:
    sampler: str
    steps: int
    batch: int
    preset: str = "tiny"
    cuda_graphs: bool = False  # ours replays CUDA graphs (eval.cuda_graphs); diffusers' loop has no such option

    @property
    def label(self) -> str:
        graphs = ", ours with cuda_graphs" if self.cuda_graphs else ""
        return f"{self.sampler} {self.steps} steps, CFG, batch {self.batch}, {self.preset} {PRESET_RESOLUTION[self.preset]}px{graphs}"


def run_loop_case(
    case: LoopCase, device: torch.device, compile: bool, repeats: int, warmup: int
) -> list[Comparison]:
    resolution = PRESET_RESOLUTION[case.preset]
    torch.manual_seed(0)
    encoder = TinyTextEncoder(width=TEXT_DIM, max_length=TEXT_LENGTH).eval().to(device)
    unet = perturbed(UNet(preset_spec(case.preset))).eval().to(device)
    ours = GuidanceSampler(
        unet, encoder, NoiseSchedule(ScheduleSettings("linear", 1000, *BETAS)), resolution,
        SamplerSettings(case.sampler, case.steps, SPACING), Guidance(scale=GUIDANCE_SCALE),
        runtime=Runtime(compile=compile, cuda_graphs=case.cuda_graphs),
    ).to(device)
    # The same (possibly compiled) module drives both loops; CUDA graphs are our loop's machinery.
    network = Runtime(compile=compile).network(unet, device) if case.cuda_graphs else ours.network
    prompts, items = prompts_for(case.batch), items_for(case.batch)
    noise = ItemNoise(0, tuple(items), (3, resolution, resolution), device=device).initial()
    scheduler = diffusers_scheduler(case.sampler)

    def run_ours() -> torch.Tensor:
        return ours.generate(prompts, items)["images"]

    def run_theirs() -> torch.Tensor:
        with torch.no_grad(), ours.runtime.autocast(device):  # no_grad: as the pipelines' __call__
            return diffusers_loop(network, encoder, scheduler, case.steps, GUIDANCE_SCALE, prompts, noise)

    both_text = TextEmbedding.cat([encoder.encode(prompts), encoder.null_embedding(case.batch)]).to(device)
    doubled = torch.cat([noise, noise])

    def network_only() -> None:
        with torch.inference_mode(), ours.runtime.autocast(device):
            for t in range(case.steps):
                network(doubled, torch.full((2 * case.batch,), 999.0 - t, device=device), text=both_text)

    agreement = float((run_ours() - run_theirs()).abs().max())
    times = interleaved({"ours": run_ours, "theirs": run_theirs, "network": network_only}, repeats, warmup, device)
    network_share = statistics.median(times["network"]) / statistics.median(times["theirs"])
    return [Comparison(
        "sampler loop", case.label, "throughput", "images/s",
        throughput(case.batch, times["ours"]), throughput(case.batch, times["theirs"]),
        notes=f"target >= 1.2; the {case.steps} network forwards alone take {100 * network_share:.0f}% of "
              f"diffusers' loop time; max abs image difference {agreement:.1e}",
        spread={n: spread(case.batch, times[n]) for n in ("ours", "theirs")},
    )]
