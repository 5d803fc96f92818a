"""GuidanceSampler: the LightningModule that turns (prompt, sample index) items into images.

Thin glue over :func:`mjexp.sampling.hires.hires_fix` (which is plain sampling when the hires fix
is disabled); with ``hires.upscaler=sr`` it also holds the super-resolution model (``sr_model``)
and encodes each batch's prompts with that model's own text encoder. ``trainer.predict`` over a
prompt set spreads the items across devices; each item's noise depends only on (seed, prompt
index, sample index), so images do not depend on batch size or the number of processes.
``runtime`` chooses how the networks execute (precision, compile, CUDA graphs;
:mod:`mjexp.sampling.runtime`) without touching the sampling math.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import lightning as L
import torch

from mjexp.autoencoder.codec import LatentCodec
from mjexp.diffusion.schedules import NoiseSchedule
from mjexp.diffusion.superres import SuperResolution
from mjexp.diffusion.unet import UNet
from mjexp.sampling.denoiser import Denoiser
from mjexp.sampling.guidance import Guidance, unconditional_text
from mjexp.sampling.hires import HiresSettings, SRStage, check_sr_model, hires_fix
from mjexp.sampling.noise import ItemNoise
from mjexp.sampling.runtime import Network, Runtime
from mjexp.sampling.samplers import SamplerSettings
from mjexp.text.base import TextEmbedding, TextEncoder


class SRModel(Protocol):
    """A loaded super-resolution model (:class:`mjexp.runs.models.LoadedModel` is one)."""

    unet: UNet
    text_encoder: TextEncoder
    schedule: NoiseSchedule
    super_resolution: SuperResolution | None


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
        sr_model: SRModel | None = None,
        codec: LatentCodec | None = None,
    ) -> None:
        """``resolution``: of the images, in pixels; with a ``codec`` (latent diffusion) the model
        samples the latent grid and the images are decoded before they leave this module."""
        super().__init__()
        if unet.spec.image_channels:
            raise ValueError(
                "this checkpoint is a super-resolution model (it needs a low-resolution image to refine); "
                "sample with a base model as ckpt and pass this one as hires.model with hires=sr"
            )
        hires = hires or HiresSettings()
        if codec is not None and hires.uses_sr:
            raise ValueError(
                "hires.upscaler=sr refines pixels with a pixel-space super-resolution model; a latent model "
                "(autoencoder) upscales with hires.space=latent or pixel and an interpolating upscaler"
            )
        check_sr_model(hires, None if sr_model is None else sr_model.super_resolution)
        self.unet = unet.eval().requires_grad_(False)
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.schedule = schedule
        self.resolution = resolution
        self.codec = codec
        self.sample_size = resolution if codec is None else codec.latent_size(resolution, resolution)[0]
        self.sampler = sampler
        self.guidance = guidance
        self.hires = hires
        self.negative_prompt = negative_prompt
        self.seed = seed
        self.runtime = runtime or Runtime()
        # Registered as submodules only when used, so they follow the module to its device.
        used = sr_model if hires.uses_sr else None
        self.sr_unet = None if used is None else used.unet.eval().requires_grad_(False)
        self.sr_text_encoder = None if used is None else used.text_encoder.eval().requires_grad_(False)
        self.sr_schedule = None if used is None else used.schedule
        self.sr_settings = None if used is None else used.super_resolution
        # name -> (device, network): plain tuples, so a compiled module is not registered as a submodule.
        self._networks: dict[str, tuple[torch.device, Network]] = {}

    def _network_on_device(self, name: str) -> Network:
        """U-Net ``name`` as the samplers call it on the current device (compiled or graphed per ``runtime``)."""
        cached = self._networks.get(name)
        if cached is None or cached[0] != self.device:
            cached = self._networks[name] = (self.device, self.runtime.network(getattr(self, name), self.device))
        return cached[1]

    @property
    def network(self) -> Network:
        """The base U-Net as the samplers call it."""
        return self._network_on_device("unet")

    @torch.inference_mode()
    def generate(self, prompts: list[str], items: list[tuple[int, int]]) -> dict[str, Any]:
        """Images in [-1, 1] for ``prompts`` (one per item) and the per-sample costs."""
        text = self.text_encoder.encode(prompts).to(self.device)
        second_needs_uncond = self.hires.enabled and self.hires.second_guidance(self.guidance).needs_uncond
        uncond = None
        if self.guidance.needs_uncond or (second_needs_uncond and not self.hires.uses_sr):
            uncond = {"text": self.unconditional(self.text_encoder, len(prompts))}
        sr = None
        if self.hires.uses_sr:
            sr_uncond = {"text": self.unconditional(self.sr_text_encoder, len(prompts))} if second_needs_uncond else None
            sr = SRStage(
                Denoiser(self._network_on_device("sr_unet"), self.sr_schedule, self.sr_unet.parameterization),
                {"text": self.sr_text_encoder.encode(prompts).to(self.device)}, sr_uncond, self.sr_settings,
            )
        dtype = next(self.unet.parameters()).dtype
        noise = ItemNoise(self.seed, tuple(items), (self.unet.spec.in_channels, self.sample_size, self.sample_size),
                          dtype=dtype, device=self.device)
        with self.runtime.autocast(self.device):
            result = hires_fix(
                Denoiser(self.network, self.schedule, self.unet.parameterization), noise, {"text": text}, uncond,
                sampler=self.sampler, guidance=self.guidance, hires=self.hires, sr=sr, codec=self.codec,
            )
        start = time.perf_counter()
        out = {"images": self.pixels(result.images), "nfe": result.nfe, "network_evals": result.network_evals}
        if result.base_images is not None:
            out["base_images"] = self.pixels(result.base_images)
        if self.codec is not None:  # decoding's share of the batch's time (a pixel-space hires pass's round trip not included)
            out["decode_seconds"] = time.perf_counter() - start
        return out

    def pixels(self, samples: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] from what the model sampled (decoded first in latent space)."""
        images = samples.float() if self.codec is None else self.codec.decode(samples.float())
        return images.clamp(-1, 1)

    def unconditional(self, encoder: TextEncoder, batch_size: int) -> TextEmbedding:
        """``encoder``'s null (or negative-prompt) embedding for the unconditional branch."""
        return unconditional_text(encoder, batch_size, self.negative_prompt or None).to(self.device)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        items = list(zip(batch["prompt_index"].tolist(), batch["sample_index"].tolist()))
        out = self.generate(list(batch["prompt"]), items)
        out.update(prompt=list(batch["prompt"]), prompt_index=batch["prompt_index"], sample_index=batch["sample_index"])
        return out
