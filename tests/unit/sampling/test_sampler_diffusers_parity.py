"""Where diffusers implements the same algorithm, single steps and whole trajectories agree with it
on identical inputs (same schedule, timesteps, network, starting noise and per-step noise).

Comparisons are in VP units (what DDPM/DDIM/DPM-Solver carry; Euler's VE state is divided by
``sqrt(1 + sigma^2)``). Tolerance: diffusers builds its tables in float32 (relative rounding
~6e-8, amplified by ``1/sqrt(alpha_bar)`` up to ~160 at the noisiest step) while ours are float64,
so agreement is expected to a few 1e-5 per step, with slow accumulation over a trajectory. An
algorithmic mistake (a timestep off by one grid point, a wrong coefficient, a missing noise term)
changes results by >= 1e-3 (``ToyNetwork`` depends strongly on ``t``), as
``test_a_wrong_timestep_is_caught`` demonstrates.
"""

from __future__ import annotations

import math
from typing import Callable

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
)

from mjexp.diffusion.parameterization import predictions_from
from mjexp.diffusion.schedules import SamplingSigmas
from mjexp.sampling.denoiser import Denoiser, vp_coefficients_at
from mjexp.sampling.guidance import Guidance
from mjexp.sampling.samplers import SamplerSettings, StepInfo, initial_state, sample_from
from sampling_helpers import ToyNetwork, linear_schedule

SHAPE = (3, 4, 4, 4)
PREDICTION_TYPE = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}
STEP_ATOL = 2e-5  # observed <= 2.3e-6
TRAJECTORY_ATOL = 2e-4  # observed <= 7.5e-5 (Karras: diffusers passes float32 fractional timesteps)
NOISE_SEED = 1000
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation:DeprecationWarning"
)  # inside diffusers


def step_noise(k: int) -> torch.Tensor:
    """The noise of step k, reproducible by a fresh generator (what diffusers' ``generator=`` draws)."""
    return torch.randn(SHAPE, generator=step_generator(k))


def step_generator(k: int) -> torch.Generator:
    return torch.Generator().manual_seed(NOISE_SEED + k)


def to_vp(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return x if math.isinf(sigma) else x * vp_coefficients_at(sigma)[0]


def make_scheduler(kind: str, settings: SamplerSettings, parameterization: str, zero_snr: bool):  # noqa: ANN201
    common = dict(
        num_train_timesteps=1000,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        prediction_type=PREDICTION_TYPE[parameterization],
        timestep_spacing=settings.spacing,
        rescale_betas_zero_snr=zero_snr,
    )
    if kind == "ddim":
        return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=True)
    if kind == "ddpm":
        return DDPMScheduler(**common, clip_sample=False, variance_type="fixed_small")
    if kind == "euler":
        return EulerDiscreteScheduler(**common, use_karras_sigmas=settings.karras)
    if kind == "euler_ancestral":
        return EulerAncestralDiscreteScheduler(**common)
    if kind == "dpmpp_2m":
        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2)
    if kind == "dpmpp_2m_sde":
        return DPMSolverMultistepScheduler(**common, algorithm_type="sde-dpmsolver++", solver_order=2)
    raise ValueError(kind)


VE_STATE = ("euler", "euler_ancestral")  # diffusers schedulers whose sample is the VE state


def diffusers_step(
    kind: str, sched, output: torch.Tensor, t: torch.Tensor, sample: torch.Tensor, k: int, eta: float
) -> torch.Tensor:  # noqa: ANN001
    if kind == "ddim":
        noise = step_noise(k) if eta > 0 else None
        return sched.step(output, t, sample, eta=eta, variance_noise=noise).prev_sample
    if kind in ("ddpm", "euler_ancestral"):
        return sched.step(output, t, sample, generator=step_generator(k)).prev_sample
    if kind == "dpmpp_2m_sde":
        return sched.step(output, t, sample, variance_noise=step_noise(k)).prev_sample
    return sched.step(output, t, sample).prev_sample


def diffusers_trajectory(
    kind: str, settings: SamplerSettings, parameterization: str, zero_snr: bool, noise: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    sched = make_scheduler(kind, settings, parameterization, zero_snr)
    sched.set_timesteps(settings.steps)
    network = ToyNetwork(parameterization)
    sigmas = settings.grid(linear_schedule(zero_snr)).sigmas.tolist()
    sample = initial_state(noise, sigmas[0]) if kind in VE_STATE else noise
    states = []
    for k, t in enumerate(sched.timesteps):
        net_in = sched.scale_model_input(sample, t) if kind in VE_STATE else sample
        output = network(net_in, torch.full((SHAPE[0],), float(t)))
        sample = diffusers_step(kind, sched, output, t, sample, k, settings.resolved_eta)
        states.append(to_vp(sample, sigmas[k + 1]) if kind in VE_STATE else sample)
    return sched.timesteps, states


def our_trajectory(
    settings: SamplerSettings, parameterization: str, zero_snr: bool, noise: torch.Tensor
) -> tuple[SamplingSigmas, list[torch.Tensor]]:
    schedule = linear_schedule(zero_snr)
    denoiser = Denoiser(ToyNetwork(parameterization), schedule)  # type: ignore[arg-type]
    grid = settings.grid(schedule)
    states: list[torch.Tensor] = []

    def record(info: StepInfo) -> None:
        states.append(to_vp(info.x, info.sigma_next))

    x = initial_state(noise, float(grid.sigmas[0]))
    sample_from(
        denoiser, x, grid, step_noise, {}, None, sampler=settings, guidance=Guidance(scale=1.0), callback=record
    )
    return grid, states


TRAJECTORIES = [
    # (diffusers scheduler, our settings, parameterization, zero terminal SNR)
    ("ddim", SamplerSettings("ddim", 10, "trailing"), "eps", False),
    ("ddim", SamplerSettings("ddim", 50, "leading"), "v", False),
    ("ddim", SamplerSettings("ddim", 20, "trailing", eta=0.5), "x0", False),
    ("ddim", SamplerSettings("ddim", 10, "trailing", eta=1.0), "eps", False),
    ("ddim", SamplerSettings("ddim", 10, "trailing"), "v", True),
    ("ddim", SamplerSettings("ddim", 20, "trailing", eta=0.5), "v", True),
    ("ddpm", SamplerSettings("ddpm", 10, "trailing"), "eps", False),
    ("ddpm", SamplerSettings("ddpm", 25, "linspace"), "x0", False),
    ("ddpm", SamplerSettings("ddpm", 20, "leading"), "v", True),
    ("euler", SamplerSettings("euler", 10, "trailing"), "eps", False),
    ("euler", SamplerSettings("euler", 30, "leading"), "v", False),
    ("euler", SamplerSettings("euler", 15, "linspace", karras=True), "x0", False),
    ("euler_ancestral", SamplerSettings("euler_ancestral", 10, "trailing"), "eps", False),
    ("euler_ancestral", SamplerSettings("euler_ancestral", 20, "leading"), "v", False),
    ("dpmpp_2m", SamplerSettings("dpmpp_2m", 10, "trailing"), "eps", False),
    ("dpmpp_2m", SamplerSettings("dpmpp_2m", 25, "trailing"), "v", False),
    ("dpmpp_2m", SamplerSettings("dpmpp_2m", 20, "trailing"), "x0", False),
    ("dpmpp_2m_sde", SamplerSettings("dpmpp_2m_sde", 10, "trailing"), "eps", False),
    ("dpmpp_2m_sde", SamplerSettings("dpmpp_2m_sde", 25, "trailing"), "v", False),
    ("dpmpp_2m_sde", SamplerSettings("dpmpp_2m_sde", 20, "trailing"), "x0", False),
]


@pytest.mark.parametrize(
    ("kind", "settings", "parameterization", "zero_snr"),
    TRAJECTORIES,
    ids=[
        f"{k}-{s.steps}-{s.spacing}{'-karras' * s.karras}-eta{s.resolved_eta:g}-{p}{'-ztsnr' * z}"
        for k, s, p, z in TRAJECTORIES
    ],
)
def test_trajectory_matches_diffusers(
    kind: str, settings: SamplerSettings, parameterization: str, zero_snr: bool
) -> None:
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    grid, ours = our_trajectory(settings, parameterization, zero_snr, noise)
    timesteps, theirs = diffusers_trajectory(kind, settings, parameterization, zero_snr, noise)
    torch.testing.assert_close(grid.timesteps, timesteps.double(), rtol=1e-4, atol=1e-3)  # Karras: float32 t
    assert len(ours) == len(theirs) == settings.steps
    for k, (a, b) in enumerate(zip(ours, theirs)):
        err = float((a - b).abs().max())
        assert err < TRAJECTORY_ATOL, f"step {k}: max |ours - diffusers| = {err:.2e}"


class ScriptedNetwork:
    """Returns given outputs in order, whatever the input: isolates one sampler step."""

    def __init__(self, outputs: list[torch.Tensor], parameterization: str) -> None:
        self.outputs = list(outputs)
        self.parameterization = parameterization

    def __call__(self, x: torch.Tensor, t: torch.Tensor, **cond: object) -> torch.Tensor:
        return self.outputs.pop(0)


def our_steps(
    settings: SamplerSettings,
    parameterization: str,
    outputs: list[torch.Tensor],
    sample_vp: torch.Tensor,
    sigmas: list[float],
    first_step: int,
) -> torch.Tensor:
    denoiser = Denoiser(ScriptedNetwork(outputs, parameterization), linear_schedule())  # type: ignore[arg-type]
    noise: Callable[[int], torch.Tensor] = lambda k: step_noise(first_step + k)  # noqa: E731
    x = sample_vp / vp_coefficients_at(sigmas[0])[0]
    out = settings.run(lambda x, s: denoiser(x, s, {}), x, sigmas, noise)
    return to_vp(out, sigmas[-1])


# diffusers' EulerAncestralDiscreteScheduler does not implement x0 ("sample") prediction.
SINGLE_STEP_CASES = [
    (kind, p)
    for kind in ("ddim", "ddpm", "euler", "euler_ancestral")
    for p in ("eps", "v", "x0")
    if (kind, p) != ("euler_ancestral", "x0")
]


@pytest.mark.parametrize(("kind", "parameterization"), SINGLE_STEP_CASES)
def test_single_steps_match_diffusers(kind: str, parameterization: str) -> None:
    eta = 0.7 if kind == "ddim" else None
    settings = SamplerSettings(kind, 10, "trailing", eta=eta)  # type: ignore[arg-type]
    sigmas = settings.grid(linear_schedule()).sigmas.tolist()
    gen = torch.Generator().manual_seed(5)
    for k in range(settings.steps):
        sample_vp, output = torch.randn(SHAPE, generator=gen), torch.randn(SHAPE, generator=gen)
        sched = make_scheduler(kind, settings, parameterization, False)
        sched.set_timesteps(settings.steps)
        t = sched.timesteps[k]
        sample = sample_vp / vp_coefficients_at(sigmas[k])[0] if kind in VE_STATE else sample_vp
        theirs = diffusers_step(kind, sched, output, t, sample, k, settings.resolved_eta)
        theirs = to_vp(theirs, sigmas[k + 1]) if kind in VE_STATE else theirs
        ours = our_steps(settings, parameterization, [output], sample_vp, sigmas[k : k + 2], k)
        err = float((ours - theirs).abs().max())
        assert err < STEP_ATOL, f"{kind} step {k}: max |ours - diffusers| = {err:.2e}"


@pytest.mark.parametrize("parameterization", ["eps", "v", "x0"])
def test_dpmpp_2m_steps_match_diffusers(parameterization: str) -> None:
    """From any grid index: a first-order step, then a second-order step that uses its history."""
    settings = SamplerSettings("dpmpp_2m", 10, "trailing")
    sigmas = settings.grid(linear_schedule()).sigmas.tolist()
    gen = torch.Generator().manual_seed(6)
    for k in range(settings.steps - 1):
        sample_vp = torch.randn(SHAPE, generator=gen)
        outputs = [torch.randn(SHAPE, generator=gen) for _ in range(2)]
        sched = make_scheduler("dpmpp_2m", settings, parameterization, False)
        sched.set_timesteps(settings.steps)
        sched.set_begin_index(k)
        theirs = sample_vp
        for j in range(2):
            theirs = sched.step(outputs[j], sched.timesteps[k + j], theirs).prev_sample
        ours = our_steps(settings, parameterization, outputs, sample_vp, sigmas[k : k + 3], k)
        err = float((ours - theirs).abs().max())
        assert err < STEP_ATOL, f"dpmpp_2m steps {k}, {k + 1}: max |ours - diffusers| = {err:.2e}"


def test_a_wrong_timestep_is_caught() -> None:
    """The tolerance has power: DDIM at the neighbouring grid's timesteps misses it by far."""
    settings = SamplerSettings("ddim", 10, "trailing")
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    _, theirs = diffusers_trajectory("ddim", settings, "eps", False, noise)
    _, shifted = our_trajectory(SamplerSettings("ddim", 10, "leading"), "eps", False, noise)
    assert float((theirs[-1] - shifted[-1]).abs().max()) > 100 * TRAJECTORY_ATOL


def test_predictions_from_network_output_match_diffusers_x0() -> None:
    """The adapter's x0 for each parameterisation equals diffusers' ``pred_original_sample``."""
    schedule = linear_schedule()
    gen = torch.Generator().manual_seed(7)
    for parameterization in ("eps", "v", "x0"):
        sched = make_scheduler("ddim", SamplerSettings("ddim", 10), parameterization, False)
        sched.set_timesteps(10)
        t = int(sched.timesteps[3])
        sample, output = torch.randn(SHAPE, generator=gen), torch.randn(SHAPE, generator=gen)
        theirs = sched.step(output, t, sample).pred_original_sample
        sigma = float(schedule.sigmas[t])
        alpha, sigma_vp = vp_coefficients_at(sigma)
        ours = predictions_from(parameterization, output, sample, torch.tensor(alpha), torch.tensor(sigma_vp))  # type: ignore[arg-type]
        torch.testing.assert_close(ours.x0, theirs, rtol=0, atol=STEP_ATOL)
