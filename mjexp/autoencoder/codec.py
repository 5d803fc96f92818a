"""Pixels <-> scaled latents through a diffusers ``AutoencoderKL``.

The diffusion model sees ``z = (posterior - shift_factor) * scaling_factor`` and sampling hands
``z / scaling_factor + shift_factor`` to the decoder: the convention of diffusers' Stable Diffusion
pipelines, so a pretrained ``vae`` folder means the same here as there.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL
from torch import nn

from mjexp.autoencoder.autoencoder_settings import AutoencoderSettings, downsampling_factor


def build_autoencoder_kl(settings: AutoencoderSettings, resolution: int) -> AutoencoderKL:
    """A freshly initialised ``AutoencoderKL`` of the size ``settings`` give (seed it first)."""
    levels = len(settings.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=settings.block_out_channels,
        layers_per_block=settings.layers_per_block,
        latent_channels=settings.latent_channels,
        norm_num_groups=settings.norm_num_groups,
        sample_size=resolution,
    )


@dataclass(frozen=True)
class Posterior:
    """The encoder's diagonal Gaussian over unscaled latents: what a latent cache stores."""

    mean: torch.Tensor
    logvar: torch.Tensor

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype, device=self.mean.device)
        return self.mean + torch.exp(0.5 * self.logvar) * noise


class LatentCodec(nn.Module):
    """An autoencoder with its latent scaling; frozen (the diffusion model never trains it).

    ``bf16=True`` runs encoder and decoder under bfloat16 autocast (on CPU too); outputs are float32.
    """

    def __init__(self, vae: AutoencoderKL, scaling_factor: float, shift_factor: float = 0.0, bf16: bool = False):
        super().__init__()
        if not scaling_factor > 0:
            raise ValueError(f"autoencoder scaling_factor={scaling_factor} must be > 0")
        self.vae = vae.eval().requires_grad_(False)
        self.scaling_factor = float(scaling_factor)
        self.shift_factor = float(shift_factor)
        self.bf16 = bf16

    @property
    def factor(self) -> int:
        return downsampling_factor(self.vae.config.block_out_channels)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        """The latent grid of an image; sizes the factor does not divide are refused."""
        if height % self.factor or width % self.factor:
            raise ValueError(
                f"image size {height}x{width} is not divisible by the autoencoder's downsampling factor "
                f"{self.factor}: choose data.resolution (and hires.scale) so that it is"
            )
        return height // self.factor, width // self.factor

    def _autocast(self, device: torch.device):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    @torch.no_grad()
    def posterior(self, images: torch.Tensor) -> Posterior:
        """The encoder's posterior for images in [-1, 1] (unscaled latent space)."""
        self.latent_size(*images.shape[-2:])
        with self._autocast(images.device):
            dist = self.vae.encode(images).latent_dist
        return Posterior(dist.mean.float(), dist.logvar.float())

    def scale(self, z: torch.Tensor) -> torch.Tensor:
        """Unscaled latents -> what the diffusion model sees."""
        return (z - self.shift_factor) * self.scaling_factor

    @torch.no_grad()
    def encode(self, images: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [-1, 1] -> scaled latents (the posterior mean, or a sample of it)."""
        posterior = self.posterior(images)
        return self.scale(posterior.sample(generator) if sample else posterior.mean)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images (about [-1, 1]; not clamped here)."""
        z = latents / self.scaling_factor + self.shift_factor
        with self._autocast(latents.device):
            images = self.vae.decode(z.to(self.vae.dtype)).sample
        return images.float()
