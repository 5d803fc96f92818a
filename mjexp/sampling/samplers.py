"""Samplers as plain functions, and ``sample()``: prompts' conditioning + noise -> images.

Conventions (k-diffusion style, Karras et al. 2022):

- A sampler is ``fn(model, x, sigmas, *, callback=None, ...) -> x_final`` where ``model(x, sigma)
  -> Predictions(x0, eps)`` already includes guidance, ``x`` is the state at ``sigmas[0]`` and
  ``sigmas`` descends (usually to 0, where the state is the image).
- The state is variance-exploding, ``x = x0 + sigma * eps``, except at ``sigma = inf`` (zero
  terminal SNR) where it is the VP state, i.e. pure noise. The probability-flow ODE is
  ``dx/dsigma = eps(x, sigma) = (x - D(x, sigma)) / sigma`` (Karras et al. 2022, Eq. 1 with
  ``sigma(t) = t``).
- Every step from ``sigma`` to ``sigma_next`` of the ancestral family has the form
  ``x_next = x0 + sigma_down * eps + sigma_up * z`` (DDIM, Song et al. 2021, Eq. 12, divided by
  ``sqrt(alpha_bar_next)``). Its limit at ``sigma = inf`` is finite, so zero-terminal-SNR
  schedules need no large-sigma substitute; Heun and DPM-Solver++ take that exact limit (the
  DDIM step from pure noise) as their first step.
- Per-step noise is ``noise(k)`` for step ``k`` of the grid (see :class:`~mjexp.sampling.noise.ItemNoise`;
  ``SamplerSettings.noise`` chooses independent draws or increments of a Brownian path).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, Sequence, get_args

import torch

from mjexp.diffusion.parameterization import Predictions
from mjexp.diffusion.schedules import NoiseSchedule, SamplingSigmas, Spacing
from mjexp.sampling.denoiser import Cond, Denoiser
from mjexp.sampling.guidance import Guidance, GuidedDenoiser
from mjexp.sampling.noise import STEP_NOISE, ItemNoise, StepNoise

SamplerName = Literal["ddpm", "ddim", "euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde"]
Model = Callable[[torch.Tensor, float], Predictions]
NoiseFn = Callable[[int], torch.Tensor]


@dataclass(frozen=True)
class StepInfo:
    """Reported after each step: the state ``x`` at ``sigma_next`` and the ``x0`` used to get there."""

    index: int
    sigma: float
    sigma_next: float
    x: torch.Tensor
    x0: torch.Tensor


Callback = Callable[[StepInfo], None]


# ---- states ----------------------------------------------------------------------------------------
def initial_state(noise: torch.Tensor, sigma_max: float) -> torch.Tensor:
    """Sampler state at ``sigma_max`` from VP standard-normal ``noise``: ``x_T = n sqrt(1 + sigma^2)``
    (the VE view of ``x_T = n`` that DDPM/DDIM assume); at ``sigma_max = inf`` the state is ``n``."""
    return noise if math.isinf(sigma_max) else noise * math.sqrt(1.0 + sigma_max**2)


def noised_state(x0: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """Forward process to ``sigma``: ``x0 + sigma * noise`` (``noise`` itself at ``sigma = inf``)."""
    return noise if math.isinf(sigma) else x0 + sigma * noise


def _floats(sigmas: torch.Tensor | Sequence[float]) -> list[float]:
    values = [float(s) for s in sigmas]
    if len(values) < 2:
        raise ValueError(f"need at least two sigmas (one step), got {values}")
    if any(b >= a for a, b in zip(values, values[1:])) or values[-1] < 0:
        raise ValueError(f"sigmas must be strictly decreasing and >= 0, got {values}")
    return values


def _report(
    callback: Callback | None, i: int, sigmas: list[float], x: torch.Tensor, x0: torch.Tensor
) -> None:
    if callback is not None:
        callback(StepInfo(i, sigmas[i], sigmas[i + 1], x, x0))


# ---- the ancestral family: DDPM, DDIM, Euler, Euler ancestral ------------------------------------
def ancestral_sigmas(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """``(sigma_down, sigma_up)`` of a step with ``sigma_down^2 + sigma_up^2 = sigma_next^2``.

    ``sigma_up = eta * sigma_next * sqrt(1 - sigma_next^2 / sigma^2)`` is DDIM's
    ``sigma_t(eta)`` (Song et al. 2021, Eq. 16) in VE units; at ``eta = 1`` it is the DDPM
    posterior standard deviation. At ``sigma = inf`` the limit is ``eta * sigma_next``.
    """
    ratio = 0.0 if math.isinf(sigma) else (sigma_next / sigma) ** 2
    up = eta * sigma_next * math.sqrt(1.0 - ratio)
    return math.sqrt(max(sigma_next**2 - up**2, 0.0)), up


def _ancestral(
    model: Model,
    x: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    eta: float,
    noise: NoiseFn | None,
    callback: Callback | None,
) -> torch.Tensor:
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1] (0 = deterministic, 1 = DDPM posterior noise), got {eta}")
    s = _floats(sigmas)
    draw = noise if noise is not None else (lambda k: torch.randn_like(x))
    for i in range(len(s) - 1):
        pred = model(x, s[i])
        down, up = ancestral_sigmas(s[i], s[i + 1], eta)
        x = pred.x0 + down * pred.eps
        if up > 0:
            x = x + up * draw(i)
        _report(callback, i, s, x, pred.x0)
    return x


@torch.no_grad()
def sample_euler(
    model: Model, x: torch.Tensor, sigmas: torch.Tensor | Sequence[float], *, callback: Callback | None = None
) -> torch.Tensor:
    """Euler on the PF-ODE (Karras et al. 2022, Alg. 1 without the correction):
    ``x + (sigma_next - sigma) eps = x0 + sigma_next eps``, which is also DDIM with eta = 0
    (Song et al. 2021, Sec. 4.3). First order."""
    return _ancestral(model, x, sigmas, 0.0, None, callback)


@torch.no_grad()
def sample_ddim(
    model: Model,
    x: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    *,
    eta: float = 0.0,
    noise: NoiseFn | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """DDIM (Song et al. 2021, Eq. 12 with sigma_t(eta) of Eq. 16), deterministic at eta = 0."""
    return _ancestral(model, x, sigmas, eta, noise, callback)


@torch.no_grad()
def sample_euler_ancestral(
    model: Model,
    x: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    *,
    eta: float = 1.0,
    noise: NoiseFn | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Euler ancestral (k-diffusion): an Euler step to ``sigma_down`` plus fresh noise of std
    ``sigma_up``; with k-diffusion's ``get_ancestral_step`` this is the same update as DDIM(eta),
    kept under its common name with its common default eta = 1."""
    return _ancestral(model, x, sigmas, eta, noise, callback)


@torch.no_grad()
def sample_ddpm(
    model: Model,
    x: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    *,
    noise: NoiseFn | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Ancestral sampling from the DDPM posterior q(x_prev | x_t, x0_hat) with the "fixed small"
    variance (Ho et al. 2020, Eqs. 6-7), generalised to skipped timesteps; it equals DDIM with
    eta = 1 (Song et al. 2021, Eq. 16 and the text after it)."""
    return _ancestral(model, x, sigmas, 1.0, noise, callback)


# ---- higher order ------------------------------------------------------------------------------
def _leave_infinity(
    model: Model, x: torch.Tensor, s: list[float], callback: Callback | None, noise: NoiseFn | None = None
) -> tuple[torch.Tensor, int]:
    """Under zero terminal SNR, take the exact first step from pure noise and return the index to
    continue from; otherwise do nothing. The step is the ODE's limit ``x0 + sigma_1 eps`` (the
    DDIM step) or, given ``noise`` (an SDE sampler), the SDE's limit ``x0 + sigma_1 z`` (the DDPM
    step: the state at infinity carries no information once any noise is injected)."""
    if not math.isinf(s[0]):
        return x, 0
    pred = model(x, s[0])
    x = pred.x0 + s[1] * (pred.eps if noise is None else noise(0))
    _report(callback, 0, s, x, pred.x0)
    return x, 1


@torch.no_grad()
def sample_heun(
    model: Model, x: torch.Tensor, sigmas: torch.Tensor | Sequence[float], *, callback: Callback | None = None
) -> torch.Tensor:
    """Heun's second-order method on the PF-ODE (Karras et al. 2022, Alg. 1): Euler predictor,
    trapezoidal corrector; an Euler step into ``sigma = 0``. 2 model calls per step but the last."""
    s = _floats(sigmas)
    x, start = _leave_infinity(model, x, s, callback)
    for i in range(start, len(s) - 1):
        pred = model(x, s[i])
        dt = s[i + 1] - s[i]
        if s[i + 1] == 0:
            x = pred.x0  # Euler into sigma = 0: x + (0 - sigma) eps
        else:
            corrector = model(x + dt * pred.eps, s[i + 1])
            x = x + dt * (pred.eps + corrector.eps) / 2
        _report(callback, i, s, x, pred.x0)
    return x


def _dpmpp_2m(
    model: Model,
    x: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    eta: float,
    noise: NoiseFn | None,
    callback: Callback | None,
) -> torch.Tensor:
    """DPM-Solver++(2M) with SDE noise ``eta`` (0: the ODE solver; 1: the SDE solver), in VE form
    with ``lambda = -log sigma`` and step ``h``:
    ``x_next = (sigma_next / sigma) e^(-eta h) x - expm1(-(1 + eta) h) D
    + sigma_next sqrt(-expm1(-2 eta h)) z``, where ``D = x0_i + (x0_i - x0_{i-1}) / 2r``
    (``r = h_{i-1} / h_i``; the "midpoint" form of Lu et al. 2022b, Alg. 2 and App. B, as in
    k-diffusion and diffusers). First order at the first step; into ``sigma = 0`` the state is x0."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1] (0 = ODE, 1 = SDE), got {eta}")
    s = _floats(sigmas)
    draw = (noise if noise is not None else (lambda k: torch.randn_like(x))) if eta > 0 else None
    x, start = _leave_infinity(model, x, s, callback, draw)
    previous: torch.Tensor | None = None
    for i in range(start, len(s) - 1):
        pred = model(x, s[i])
        if s[i + 1] == 0:
            x = pred.x0
        else:
            h = math.log(s[i] / s[i + 1])
            d = pred.x0
            if previous is not None:
                r = math.log(s[i - 1] / s[i]) / h
                d = pred.x0 + (pred.x0 - previous) / (2 * r)
            x = (s[i + 1] / s[i]) * math.exp(-eta * h) * x - math.expm1(-(1 + eta) * h) * d
            if draw is not None:
                x = x + s[i + 1] * math.sqrt(-math.expm1(-2 * eta * h)) * draw(i)
        previous = pred.x0
        _report(callback, i, s, x, pred.x0)
    return x


@torch.no_grad()
def sample_dpmpp_2m(
    model: Model, x: torch.Tensor, sigmas: torch.Tensor | Sequence[float], *, callback: Callback | None = None
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2): the deterministic multistep solver of the
    probability-flow ODE, first order at the first step and into ``sigma = 0`` (as diffusers'
    ``final_sigmas_type="zero"``)."""
    return _dpmpp_2m(model, x, sigmas, 0.0, None, callback)


@torch.no_grad()
def sample_dpmpp_2m_sde(
    model: Model,
    x: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    *,
    eta: float = 1.0,
    noise: NoiseFn | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) SDE (Lu et al. 2022b; k-diffusion ``sample_dpmpp_2m_sde``, diffusers
    ``algorithm_type="sde-dpmsolver++"``): the same multistep x0 extrapolation on the reverse SDE,
    so each step forgets part of the state and injects fresh noise. Stochastic samplers correct
    the errors of an imperfect model that an ODE solver carries to the end (Karras et al. 2022,
    Sec. 4), at 2nd-order cost per step; ``eta = 0`` is :func:`sample_dpmpp_2m`."""
    return _dpmpp_2m(model, x, sigmas, eta, noise, callback)


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "euler": sample_euler,
    "euler_ancestral": sample_euler_ancestral,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
}
# The eta a sampler uses when none is given; only the _TUNABLE_ETA samplers accept other values.
DEFAULT_ETA: dict[str, float] = {
    "ddpm": 1.0,
    "ddim": 0.0,
    "euler": 0.0,
    "euler_ancestral": 1.0,
    "heun": 0.0,
    "dpmpp_2m": 0.0,
    "dpmpp_2m_sde": 1.0,
}
_TUNABLE_ETA = ("ddim", "euler_ancestral", "dpmpp_2m_sde")


# ---- settings and the top-level entry ------------------------------------------------------------
@dataclass(frozen=True)
class SamplerSettings:
    """Which sampler walks which sigma grid. ``eta=None`` means the sampler's own (``DEFAULT_ETA``).
    ``noise``: where a stochastic sampler's step noise comes from (``independent`` draws per step,
    or ``brownian`` increments of one path per item, comparable across step counts); deterministic
    samplers draw none."""

    name: SamplerName = "ddim"
    steps: int = 20
    spacing: Spacing = "trailing"
    karras: bool = False
    rho: float = 7.0
    eta: float | None = None
    noise: StepNoise = "independent"

    def __post_init__(self) -> None:
        problems = []  # all of them at once: a config check lists every problem
        if self.name not in SAMPLERS:
            problems.append(f"sampler.name={self.name!r} is not one of {', '.join(SAMPLERS)}")
        if self.steps < 1:
            problems.append(f"sampler.steps must be >= 1, got {self.steps}")
        if self.spacing not in get_args(Spacing):
            problems.append(f"sampler.spacing={self.spacing!r} is not one of {', '.join(get_args(Spacing))}")
        if self.noise not in STEP_NOISE:
            problems.append(f"sampler.noise={self.noise!r} is not one of {', '.join(STEP_NOISE)}")
        if not self.rho > 0:
            problems.append(f"sampler.rho must be > 0 (the Karras grid's exponent), got {self.rho}")
        if self.eta is not None:
            if not 0.0 <= self.eta <= 1.0:
                problems.append(f"sampler.eta must be in [0, 1], got {self.eta}")
            elif self.name in SAMPLERS and self.name not in _TUNABLE_ETA and self.eta != DEFAULT_ETA[self.name]:
                problems.append(
                    f"sampler {self.name!r} has fixed eta={DEFAULT_ETA[self.name]}, got eta={self.eta}; "
                    f"eta is tunable for {', '.join(_TUNABLE_ETA)}"
                )
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def resolved_eta(self) -> float:
        return DEFAULT_ETA[self.name] if self.eta is None else self.eta

    def grid(self, schedule: NoiseSchedule) -> SamplingSigmas:
        return schedule.sampling_sigmas(self.steps, self.spacing, self.karras, self.rho)

    def run(
        self,
        model: Model,
        x: torch.Tensor,
        sigmas: torch.Tensor | Sequence[float],
        noise: NoiseFn | None = None,
        callback: Callback | None = None,
    ) -> torch.Tensor:
        """Run this sampler over ``sigmas`` (which need not be ``self.grid``, e.g. for hires)."""
        options: dict[str, object] = {"callback": callback}
        if self.name in _TUNABLE_ETA:
            options["eta"] = self.resolved_eta
        if self.resolved_eta > 0:
            options["noise"] = noise
        return SAMPLERS[self.name](model, x, sigmas, **options)


@dataclass(frozen=True)
class SampleResult:
    """Images (B, C, H, W) and per-sample costs; ``base_images`` holds the hires fix's first stage."""

    images: torch.Tensor
    nfe: int
    network_evals: int
    base_images: torch.Tensor | None = None


def on_grid(guided: GuidedDenoiser, grid: SamplingSigmas) -> Model:
    """Bind a guided denoiser to a grid: calls at the grid's sigmas get the grid's exact timesteps."""
    timestep_of = dict(zip(grid.sigmas[:-1].tolist(), grid.timesteps.tolist()))
    return lambda x, sigma: guided(x, sigma, timestep_of.get(sigma))


@torch.no_grad()
def sample_from(
    denoiser: Denoiser,
    x: torch.Tensor,
    grid: SamplingSigmas,
    noise: NoiseFn | None,
    cond: Cond,
    uncond: Cond | None,
    *,
    sampler: SamplerSettings,
    guidance: Guidance,
    callback: Callback | None = None,
) -> SampleResult:
    """Denoise state ``x`` at ``grid.sigmas[0]`` down the grid with guidance (the part shared by
    plain sampling and the hires pass)."""
    guided = GuidedDenoiser(denoiser, cond, uncond, guidance)
    images = sampler.run(on_grid(guided, grid), x, grid.sigmas, noise, callback)
    return SampleResult(images, guided.nfe, guided.network_evals)


@torch.no_grad()
def sample(
    denoiser: Denoiser,
    noise: ItemNoise,
    cond: Cond,
    uncond: Cond | None = None,
    *,
    sampler: SamplerSettings = SamplerSettings(),
    guidance: Guidance = Guidance(),
    callback: Callback | None = None,
) -> SampleResult:
    """Generate one batch: items' matched initial noise -> images, with CFG per ``guidance``.

    ``cond``/``uncond`` are network conditioning dicts for the batch (``uncond`` holds the null or
    negative-prompt embedding and may be ``None`` when guidance never needs it).
    """
    grid = sampler.grid(denoiser.schedule)
    x = initial_state(noise.initial(), float(grid.sigmas[0]))
    return sample_from(
        denoiser, x, grid, noise.steps(grid.sigmas, sampler.noise), cond, uncond,
        sampler=sampler, guidance=guidance, callback=callback,
    )
