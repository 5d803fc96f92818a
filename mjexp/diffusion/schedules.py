"""Noise schedules: one object answers every question samplers and the loss ask.

Conventions (shared by training and every sampler):
- Discrete training timesteps ``t = 0 .. T-1``; ``alphas_cumprod[t]`` is the signal fraction
  ``alpha_bar_t`` of the variance-preserving (VP) process ``x_t = sqrt(a) x0 + sqrt(1-a) eps``.
- ``sigma(t) = sqrt((1 - a) / a)`` is the equivalent variance-exploding noise level
  (Karras et al. 2022): ``x_t / sqrt(a) = x0 + sigma * eps``. With zero-terminal SNR the last
  sigma is ``inf``.
- Continuous ``t`` interpolates ``log sigma`` linearly between integer timesteps (k-diffusion's
  ``DiscreteSchedule``), so ``sigma_to_t`` and ``t_to_sigma`` are exact inverses.

All tables are float64; callers cast at the point of use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch

BetaSchedule = Literal["linear", "scaled_linear", "cosine", "sigmoid"]
Spacing = Literal["leading", "trailing", "linspace"]


def betas_linear(num_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """DDPM's linear betas (Ho et al. 2020, Sec. 4)."""
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def betas_scaled_linear(num_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Linear in sqrt(beta): the Stable Diffusion / LDM schedule."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64) ** 2


def betas_cosine(num_timesteps: int, offset: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal 2021, Eq. 17: alpha_bar(t) = cos^2(((t/T + s)/(1 + s)) pi/2).

    Betas are clipped at ``max_beta`` (their Sec. 3.2) to avoid a singularity at t = T.
    """

    def alpha_bar(u: float) -> float:
        return math.cos((u + offset) / (1 + offset) * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), max_beta)
        for i in range(num_timesteps)
    ]
    return torch.tensor(betas, dtype=torch.float64)


def betas_sigmoid(num_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Sigmoid-shaped betas (GeoDiff; the diffusers ``beta_schedule="sigmoid"`` definition)."""
    ramp = torch.sigmoid(torch.linspace(-6, 6, num_timesteps, dtype=torch.float64))
    return ramp * (beta_end - beta_start) + beta_start


def rescale_zero_terminal_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2024 ("Common Diffusion Noise Schedules and Sample Steps are Flawed"), Alg. 1.

    Shifts and scales sqrt(alpha_bar) so the last timestep has exactly zero SNR while the first
    keeps its value.
    """
    sqrt_ab = alphas_cumprod.sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab = (sqrt_ab - last) * first / (first - last)
    return sqrt_ab**2


def shift_snr(alphas_cumprod: torch.Tensor, factor: float) -> torch.Tensor:
    """Multiply SNR by ``factor`` at every timestep (Hoogeboom et al. 2023, "simple diffusion").

    For a model trained at ``base`` resolution used at ``res``, ``factor = (base / res) ** 2``:
    larger images need more noise for the same perceptual corruption.
    """
    snr = alphas_cumprod / (1 - alphas_cumprod)
    shifted = snr * factor
    out = shifted / (1 + shifted)
    # Keep an exact zero where the SNR is zero (1 - a == 0 makes snr inf at a == 1; not reachable).
    return torch.where(alphas_cumprod == 0, torch.zeros_like(out), out)


@dataclass(frozen=True)
class SamplingSigmas:
    """A descending sampling grid: ``sigmas`` has ``steps + 1`` entries ending at 0, and
    ``timesteps`` the (possibly fractional) training timestep of each non-final sigma."""

    sigmas: torch.Tensor
    timesteps: torch.Tensor

    @property
    def steps(self) -> int:
        return len(self.timesteps)


@dataclass(frozen=True)
class ScheduleSettings:
    """What defines a noise schedule (the config's ``schedule`` group is derived from these fields).

    ``beta_start``/``beta_end`` bound the betas of every kind but ``cosine``; ``zero_terminal_snr``
    rescales the last step to SNR 0 (:func:`rescale_zero_terminal_snr`);
    ``snr_shift_base_resolution``: multiply SNR by ``(base / data resolution)^2``
    (:func:`shift_snr`, simple diffusion), 0 = off.
    """

    kind: BetaSchedule = "linear"
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    zero_terminal_snr: bool = False
    snr_shift_base_resolution: int = 0

    def __post_init__(self) -> None:
        problems = []  # all of them at once: a config check lists every problem
        if self.kind not in get_args(BetaSchedule):
            problems.append(f"schedule.kind={self.kind!r} is not one of {', '.join(get_args(BetaSchedule))}")
        if self.num_train_timesteps < 2:
            problems.append(f"schedule.num_train_timesteps must be >= 2, got {self.num_train_timesteps}")
        if not 0 < self.beta_start < self.beta_end < 1:
            problems.append(
                f"schedule.beta_start={self.beta_start} and schedule.beta_end={self.beta_end} "
                "need 0 < beta_start < beta_end < 1"
            )
        if self.snr_shift_base_resolution < 0:
            problems.append(
                f"schedule.snr_shift_base_resolution must be >= 0 (0: no shift), got {self.snr_shift_base_resolution}"
            )
        if problems:
            raise ValueError("; ".join(problems))

    def snr_shift(self, resolution: int | None) -> float:
        """The factor SNR is multiplied by for data of ``resolution`` px (1 without a base resolution)."""
        if not self.snr_shift_base_resolution:
            return 1.0
        if resolution is None or resolution < 1:
            raise ValueError(
                f"schedule.snr_shift_base_resolution={self.snr_shift_base_resolution} needs the data's "
                f"resolution, got {resolution}"
            )
        return (self.snr_shift_base_resolution / resolution) ** 2


class NoiseSchedule:
    """A discrete VP schedule with its continuous sigma view.

    Built from :class:`ScheduleSettings` (and the data's ``resolution`` where the SNR shift needs
    it); every sampler and the training loss read the same instance so that their definitions of
    "timestep t" cannot drift apart.
    """

    def __init__(self, settings: ScheduleSettings = ScheduleSettings(), resolution: int | None = None) -> None:
        self.settings = settings
        steps, start, end = settings.num_train_timesteps, settings.beta_start, settings.beta_end
        builders = {
            "linear": lambda: betas_linear(steps, start, end),
            "scaled_linear": lambda: betas_scaled_linear(steps, start, end),
            "cosine": lambda: betas_cosine(steps),
            "sigmoid": lambda: betas_sigmoid(steps, start, end),
        }
        alphas_cumprod = torch.cumprod(1 - builders[settings.kind](), dim=0)
        shift = settings.snr_shift(resolution)
        if shift != 1.0:
            alphas_cumprod = shift_snr(alphas_cumprod, shift)
        if settings.zero_terminal_snr:
            alphas_cumprod = rescale_zero_terminal_snr(alphas_cumprod)
        self.alphas_cumprod = alphas_cumprod
        self.sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()  # inf where a == 0
        self._log_sigmas = self.sigmas.log()

    @property
    def kind(self) -> BetaSchedule:
        return self.settings.kind

    @property
    def num_train_timesteps(self) -> int:
        return self.settings.num_train_timesteps

    @property
    def zero_terminal_snr(self) -> bool:
        return self.settings.zero_terminal_snr

    # ---- per-timestep quantities -------------------------------------------------------------
    @property
    def betas(self) -> torch.Tensor:
        prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        return 1 - self.alphas_cumprod / prev

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        """Largest sigma; ``inf`` under zero-terminal SNR."""
        return float(self.sigmas[-1])

    @property
    def sigma_max_finite(self) -> float:
        """Largest finite sigma (the second to last under zero-terminal SNR)."""
        finite = self.sigmas[torch.isfinite(self.sigmas)]
        return float(finite[-1])

    def snr(self, t: torch.Tensor | float) -> torch.Tensor:
        """Signal-to-noise ratio ``alpha_bar / (1 - alpha_bar) = 1 / sigma^2`` at (continuous) t."""
        return self.t_to_sigma(t).pow(-2)

    def alpha_bar(self, t: torch.Tensor | float) -> torch.Tensor:
        """``alpha_bar`` at continuous t, consistent with :meth:`t_to_sigma`."""
        sigma = self.t_to_sigma(t)
        return 1 / (1 + sigma**2)

    # ---- sigma <-> t ---------------------------------------------------------------------------
    def t_to_sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        """Sigma at continuous timestep t in [0, T-1] (log-linear between integers)."""
        t = torch.as_tensor(t, dtype=torch.float64)
        if (t < 0).any() or (t > self.num_train_timesteps - 1).any():
            raise ValueError(f"t must lie in [0, {self.num_train_timesteps - 1}]")
        low = t.floor().long().clamp(max=self.num_train_timesteps - 2)
        frac = t - low
        lo, hi = self._log_sigmas[low], self._log_sigmas[low + 1]
        # frac == 0 must not multiply an inf endpoint (0 * inf = nan).
        log_sigma = torch.where(frac == 0, lo, torch.where(frac == 1, hi, (1 - frac) * lo + frac * hi))
        return log_sigma.exp()

    def sigma_to_t(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """Inverse of :meth:`t_to_sigma`; sigmas outside the table are clamped to its ends."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        log_sigma = sigma.log()
        log_table = self._log_sigmas
        finite_top = int(torch.isfinite(log_table).sum()) - 1
        idx = torch.searchsorted(log_table[: finite_top + 1].contiguous(), log_sigma.contiguous())
        low = (idx - 1).clamp(0, max(finite_top - 1, 0))
        lo, hi = log_table[low], log_table[low + 1]
        frac = ((log_sigma - lo) / (hi - lo)).clamp(0, 1)
        t = low.double() + frac
        # Sigmas beyond the largest finite entry map to the last timestep (inf under ZT-SNR).
        beyond = log_sigma > log_table[finite_top]
        return torch.where(beyond, torch.full_like(t, self.num_train_timesteps - 1.0), t)

    # ---- sampling grids ----------------------------------------------------------------------
    def timesteps(self, steps: int, spacing: Spacing = "trailing") -> torch.Tensor:
        """Descending integer timesteps for ``steps`` sampling steps.

        Definitions follow Table 2 of Lin et al. 2024 and diffusers' ``timestep_spacing``:
        ``linspace`` includes both ends, ``leading`` starts at 0 with stride T//steps,
        ``trailing`` ends at T-1 with stride T/steps (the only one that reaches the
        zero-SNR step).
        """
        T = self.num_train_timesteps
        if not 1 <= steps <= T:
            raise ValueError(f"steps must be in [1, {T}], got {steps}")
        if spacing == "linspace":
            ts = torch.linspace(0, T - 1, steps, dtype=torch.float64).round()
        elif spacing == "leading":
            ts = (torch.arange(steps, dtype=torch.float64) * (T // steps)).round()
        elif spacing == "trailing":
            # T - k T/steps for k < steps. (``arange(T, 0, -T/steps)``, as diffusers writes it, can
            # return one element more, e.g. T=1000, steps=61, which became timestep -1.)
            ts = ((T - torch.arange(steps, dtype=torch.float64) * (T / steps)).round() - 1).flip(0)
        else:
            raise ValueError(f"unknown spacing {spacing!r}; choose leading, trailing or linspace")
        return ts.flip(0)

    def sampling_sigmas(
        self,
        steps: int,
        spacing: Spacing = "trailing",
        karras: bool = False,
        rho: float = 7.0,
    ) -> SamplingSigmas:
        """The sigma grid a sampler walks, ending in an exact 0 (the clean image).

        ``karras=True`` uses Karras et al. 2022 Eq. 5 between this schedule's smallest and
        largest (finite) sigma and maps each sigma back to a fractional timestep.
        """
        if karras:
            if steps < 1:
                raise ValueError(f"steps must be >= 1, got {steps}")
            s_min, s_max = self.sigma_min, self.sigma_max_finite
            ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
            inv = s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))
            sigmas = inv**rho
            timesteps = self.sigma_to_t(sigmas)
        else:
            timesteps = self.timesteps(steps, spacing)
            sigmas = self.sigmas[timesteps.long()]
        return SamplingSigmas(torch.cat([sigmas, sigmas.new_zeros(1)]), timesteps)

    def __repr__(self) -> str:
        return (
            f"NoiseSchedule(kind={self.kind!r}, T={self.num_train_timesteps}, "
            f"zero_terminal_snr={self.zero_terminal_snr})"
        )
