"""Sampling math: denoiser adapter, guidance, samplers, matched noise and the hires fix.

Plain functions over tensors; no Lightning or Hydra here (the ``GuidanceSampler`` module wraps them).
"""

from mjexp.sampling.denoiser import Cond, Denoiser
from mjexp.sampling.guidance import Guidance, GuidedDenoiser, unconditional_text
from mjexp.sampling.hires import HiresSettings, SRStage, hires_fix
from mjexp.sampling.noise import ItemNoise
from mjexp.sampling.samplers import (
    SAMPLERS,
    SampleResult,
    SamplerSettings,
    sample,
    sample_from,
)

__all__ = [
    "Cond",
    "Denoiser",
    "Guidance",
    "GuidedDenoiser",
    "HiresSettings",
    "ItemNoise",
    "SAMPLERS",
    "SRStage",
    "SampleResult",
    "SamplerSettings",
    "hires_fix",
    "sample",
    "sample_from",
    "unconditional_text",
]
