"""GuidanceSampler: the LightningModule that turns (prompt, sample index) items into images.

Thin glue over :func:`mjexp.sampling.hires.hires_fix` (which is plain sampling when the hires fix
is disabled). ``trainer.predict`` over a prompt set spreads the items across devices; each item's
noise depends only on (seed, prompt index, sample index), so images do not depend on batch size
or the number of processes. ``runtime`` chooses how the network executes (precision, compile,
CUDA graphs; :mod:`mjexp.sampling.runtime`) without touching the sampling math.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from mjexp.diffusion.schedules import NoiseSchedule
from mjexp.diffusion.unet import UNet
from mjexp.sampling.denoiser import Denoiser
from mjexp.sampling.guidance import Guidance, unconditional_text
from mjexp.sampling.hires import HiresSettings, hires_fix
from mjexp.sampling.noise import ItemNoise
from mjexp.sampling.runtime import Network, Runtime
from mjexp.sampling.samplers import SamplerSettings
from mjexp.text.base import TextEncoder


class GuidanceSampler(L.LightningModule):
    """Generates images for batches ``{"prompt": [...], "prompt_index": (B,), "sample_index": (B,)}``."""

    def __init__(
        self,
        unet: UNet,
        text_encoder: TextEncoder,
        schedule: NoiseSchedule,
        resolution: int,
        sampler: SamplerSettings,
        guidance: Guidance,
        hires: HiresSettings | None = None,
        negative_prompt: str = "",
        seed: int = 0,
        runtime: Runtime | None = None,
    ) -> None:
        super().__init__()
        self.unet = unet.eval().requires_grad_(False)
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.schedule = schedule
        self.resolution = resolution
        self.sampler = sampler
        self.guidance = guidance
        self.hires = hires or HiresSettings()
        self.negative_prompt = negative_prompt
        self.seed = seed
        self.runtime = runtime or Runtime()
        # (device, network): a plain tuple, so a compiled module is not registered as a submodule.
        self._network: tuple[torch.device, Network] | None = None

    @property
    def network(self) -> Network:
        """The U-Net as the samplers call it on the current device (compiled or graphed per ``runtime``)."""
        if self._network is None or self._network[0] != self.device:
            self._network = (self.device, self.runtime.network(self.unet, self.device))
        return self._network[1]

    @torch.inference_mode()
    def generate(self, prompts: list[str], items: list[tuple[int, int]]) -> dict[str, Any]:
        """Images in [-1, 1] for ``prompts`` (one per item) and the per-sample costs."""
        b = len(prompts)
        text = self.text_encoder.encode(prompts).to(self.device)
        uncond = None
        if self.guidance.needs_uncond or (self.hires.enabled and self.hires.guidance_scale not in (None, 1.0)):
            uncond = {"text": unconditional_text(self.text_encoder, b, self.negative_prompt or None).to(self.device)}
        dtype = next(self.unet.parameters()).dtype
        noise = ItemNoise(self.seed, tuple(items), (self.unet.spec.in_channels, self.resolution, self.resolution),
                          dtype=dtype, device=self.device)
        with self.runtime.autocast(self.device):
            result = hires_fix(
                Denoiser(self.network, self.schedule, self.unet.parameterization), noise, {"text": text}, uncond,
                sampler=self.sampler, guidance=self.guidance, hires=self.hires,
            )
        out = {"images": result.images.float().clamp(-1, 1), "nfe": result.nfe, "network_evals": result.network_evals}
        if result.base_images is not None:
            out["base_images"] = result.base_images.float().clamp(-1, 1)
        return out

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        items = list(zip(batch["prompt_index"].tolist(), batch["sample_index"].tolist()))
        out = self.generate(list(batch["prompt"]), items)
        out.update(prompt=list(batch["prompt"]), prompt_index=batch["prompt_index"], sample_index=batch["sample_index"])
        return out
