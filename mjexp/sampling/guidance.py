"""Classifier-free guidance (Ho & Salimans 2022) and its refinements, as one guided denoiser.

Everything is defined per noise level ``sigma``, never per step index, so a setting means the same
thing for every sampler, step count and schedule.

Order of operations at one call (``w`` = guidance scale at this sigma):

1. one batched forward over ``[cond; uncond]`` (only the half that is needed when ``w`` is 1 or 0);
2. CFG ``D = D_u + w (D_c - D_u)``; it is linear in the network output, so combining x0 or eps
   predictions is the same thing;
3. guidance rescale (Lin et al. 2024, Sec. 3.4) on the **x0 prediction**: the paper writes it
   for the predicted sample ``x``; diffusers' ``guidance_rescale`` applies the same formula to
   the raw network output (eps or v), which differs for those parameterisations. It needs both
   branches, so it is skipped where only one is evaluated (at ``w = 1`` it is the identity);
4. dynamic thresholding (Saharia et al. 2022, Sec. 2.3) of x0;
5. if 3 or 4 changed x0, eps is re-derived from the modified x0 so the pair stays consistent
   (``x = x0 + sigma eps``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from mjexp.diffusion.parameterization import Predictions, eps_from_x0
from mjexp.sampling.denoiser import Cond, Denoiser, vp_coefficient_tensors, vp_state
from mjexp.text.base import TextEmbedding, TextEncoder

ScaleSchedule = Literal["constant", "linear"]


@dataclass(frozen=True)
class Guidance:
    """Guidance settings.

    - ``scale``: 0 = unconditional only, 1 = conditional only, > 1 = extrapolate away from uncond.
    - ``schedule="linear"``: the scale ramps linearly in ``log sigma`` from ``scale_start`` (at
      ``sigma >= ramp_sigmas[1]``) to ``scale`` (at ``sigma <= ramp_sigmas[0]``); ``scale_start``
      defaults to 1 (no guidance at high noise, the "increasing" schedule of Wang et al. 2024).
    - ``rescale``: phi of Lin et al. 2024 (0 = off, 0.7 in the paper).
    - ``interval``: ``(sigma_lo, sigma_hi)``; guidance is applied only for
      ``sigma_lo < sigma <= sigma_hi`` and is conditional-only (scale 1) elsewhere (Kynkaanniemi
      et al. 2024, "Applying Guidance in a Limited Interval ..."). ``sigma_hi`` may be ``inf``.
    - ``dynamic_threshold``: the percentile ``p`` of Imagen's dynamic thresholding (e.g. 0.995);
      ``None`` = off.
    """

    scale: float = 3.0
    schedule: ScaleSchedule = "constant"
    scale_start: float | None = None
    ramp_sigmas: tuple[float, float] = (0.1, 10.0)
    rescale: float = 0.0
    interval: tuple[float, float] | None = None
    dynamic_threshold: float | None = None

    def __post_init__(self) -> None:
        if not self.scale >= 0:
            raise ValueError(
                f"guidance.scale must be >= 0 (0 = unconditional, 1 = conditional), got {self.scale}"
            )
        if self.schedule not in ("constant", "linear"):
            raise ValueError(f"unknown guidance.schedule {self.schedule!r}; choose 'constant' or 'linear'")
        if self.scale_start is not None and (self.schedule != "linear" or not self.scale_start >= 0):
            raise ValueError(
                f"guidance.scale_start={self.scale_start} needs schedule='linear' and a value >= 0 "
                f"(schedule is {self.schedule!r})"
            )
        lo, hi = self.ramp_sigmas
        if not 0 < lo < hi < math.inf:
            raise ValueError(
                f"guidance.ramp_sigmas must satisfy 0 < low < high < inf, got {self.ramp_sigmas}"
            )
        if not 0 <= self.rescale <= 1:
            raise ValueError(f"guidance.rescale (phi) must be in [0, 1], got {self.rescale}")
        if self.interval is not None and not 0 <= self.interval[0] < self.interval[1]:
            raise ValueError(
                f"guidance.interval must be (sigma_lo, sigma_hi) with 0 <= lo < hi, got {self.interval}"
            )
        if self.dynamic_threshold is not None and not 0 < self.dynamic_threshold <= 1:
            raise ValueError(
                f"guidance.dynamic_threshold must be a percentile in (0, 1], got {self.dynamic_threshold}"
            )

    def scale_at(self, sigma: float) -> float:
        """The guidance scale used at noise level ``sigma``."""
        if self.interval is not None and not self.interval[0] < sigma <= self.interval[1]:
            return 1.0
        if self.schedule == "constant":
            return self.scale
        start = 1.0 if self.scale_start is None else self.scale_start
        lo, hi = self.ramp_sigmas
        if sigma >= hi:
            return start
        if sigma <= lo:
            return self.scale
        frac = (math.log(hi) - math.log(sigma)) / (math.log(hi) - math.log(lo))
        return start + frac * (self.scale - start)

    @property
    def needs_uncond(self) -> bool:
        """Whether any sigma can use the unconditional branch."""
        if self.schedule == "linear":
            return self.scale != 1 or (self.scale_start is not None and self.scale_start != 1)
        return self.scale != 1


def rescale_guided(guided: torch.Tensor, cond: torch.Tensor, phi: float) -> torch.Tensor:
    """Lin et al. 2024, Sec. 3.4: match the guided prediction's per-sample std to the conditional
    one's, then blend: ``phi * guided * std(cond) / std(guided) + (1 - phi) * guided``."""
    dims = tuple(range(1, guided.ndim))
    factor = cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True)
    return guided * (phi * factor + (1 - phi))


def dynamic_threshold(x0: torch.Tensor, percentile: float) -> torch.Tensor:
    """Saharia et al. 2022, Sec. 2.3: ``s = max(quantile_p(|x0|), 1)`` per sample, then
    ``clip(x0, -s, s) / s``; samples already inside [-1, 1] at that percentile are unchanged."""
    flat = x0.abs().flatten(1).to(torch.promote_types(x0.dtype, torch.float32))  # quantile needs float32+
    s = torch.quantile(flat, percentile, dim=1).clamp(min=1.0).to(x0.dtype)
    s = s.reshape(-1, *([1] * (x0.ndim - 1)))
    return x0.clamp(-s, s) / s


def cat_cond(first: Cond, second: Cond) -> dict[str, object]:
    """Concatenate two conditioning dicts along the batch (cond and uncond for one forward)."""
    if set(first) != set(second):
        raise ValueError(f"cond and uncond must have the same keys, got {sorted(first)} and {sorted(second)}")
    out: dict[str, object] = {}
    for key, a in first.items():
        b = second[key]
        if isinstance(a, TextEmbedding):
            out[key] = TextEmbedding.cat([a, b])
        elif isinstance(a, torch.Tensor):
            out[key] = torch.cat([a, b])
        else:
            raise TypeError(f"cannot batch conditioning {key!r} of type {type(a).__name__}")
    return out


def unconditional_text(
    encoder: TextEncoder, batch_size: int, negative_prompt: str | Sequence[str] | None = None
) -> TextEmbedding:
    """What the unconditional branch sees: the empty prompt, or negative prompt(s) replacing it."""
    if isinstance(negative_prompt, str):
        negative_prompt = [negative_prompt] * batch_size
    if negative_prompt is None or all(p == "" for p in negative_prompt):
        return encoder.null_embedding(batch_size)
    if len(negative_prompt) != batch_size:
        raise ValueError(f"got {len(negative_prompt)} negative prompts for a batch of {batch_size}")
    return encoder.encode(list(negative_prompt))


class GuidedDenoiser:
    """The guided denoiser samplers call: ``guided(x, sigma, t=None) -> Predictions``.

    Counts ``nfe`` (guided calls per sample) and ``network_evals`` (forward passes per sample,
    cond and uncond counted separately).
    """

    def __init__(self, denoiser: Denoiser, cond: Cond, uncond: Cond | None, guidance: Guidance) -> None:
        if uncond is None and guidance.needs_uncond:
            raise ValueError(
                f"guidance {guidance} uses the unconditional branch but uncond=None was given; "
                "pass the null (or negative-prompt) conditioning"
            )
        self.denoiser = denoiser
        self.cond = cond
        self.uncond = uncond
        self.guidance = guidance
        self.nfe = 0
        self.network_evals = 0
        self._both: Cond | None = None  # [cond; uncond], batched once for every guided call

    @property
    def both(self) -> Cond:
        if self._both is None:
            self._both = cat_cond(self.cond, self.uncond)  # type: ignore[arg-type]
        return self._both

    def __call__(self, x: torch.Tensor, sigma: float, t: float | None = None) -> Predictions:
        g = self.guidance
        w = g.scale_at(sigma)
        self.nfe += 1
        if w == 1 or w == 0:
            self.network_evals += 1
            pred = self.denoiser(x, sigma, self.cond if w == 1 else self.uncond, t)  # type: ignore[arg-type]
            x0, eps = pred.x0, pred.eps
            modified = False
        else:
            self.network_evals += 2
            both = self.denoiser(torch.cat([x, x]), sigma, self.both, t)
            (cond_x0, uncond_x0), (cond_eps, uncond_eps) = both.x0.chunk(2), both.eps.chunk(2)
            x0 = uncond_x0 + w * (cond_x0 - uncond_x0)
            eps = uncond_eps + w * (cond_eps - uncond_eps)
            modified = g.rescale > 0
            if modified:
                x0 = rescale_guided(x0, cond_x0, g.rescale)
        if g.dynamic_threshold is not None:
            x0, modified = dynamic_threshold(x0, g.dynamic_threshold), True
        if modified:
            eps = eps_from_x0(x0, vp_state(x, sigma), *vp_coefficient_tensors(sigma))
        return Predictions(x0=x0, eps=eps)
