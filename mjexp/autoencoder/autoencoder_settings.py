"""The ``autoencoder`` config group as one domain object: which autoencoder, its size and recipe.

Each default is written here once (docs/architecture.md, "Config groups"). ``name`` chooses:
``none`` diffuses pixels; ``kl`` trains a diffusers ``AutoencoderKL`` here with the Stable
Diffusion recipe (mjexp.autoencoder.autoencoder_module); ``pretrained`` loads one saved with
``save_pretrained`` (a Stable Diffusion pipeline's ``vae`` folder, say).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AutoencoderName = Literal["none", "kl", "pretrained"]
NAMES: tuple[str, ...] = ("none", "kl", "pretrained")


@dataclass
class AutoencoderSettings:
    """``block_out_channels`` sets the width per level and, by its length, the downsampling factor
    ``2 ** (levels - 1)``. Defaults size a 0.2M-parameter f=4 model for 64 px shapes on a CPU;
    ``disc_start=None`` leaves the adversarial term out (its step and weight otherwise follow
    Esser et al. 2021, as Stable Diffusion's autoencoder did)."""

    name: AutoencoderName = "none"
    block_out_channels: tuple[int, ...] = (16, 32, 32)
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 8
    # Training recipe (name=kl): L1 reconstruction summed over pixels, KL to N(0, I) weighted by
    # kl_weight (1e-6 in Stable Diffusion's kl-f8), a PatchGAN hinge loss from disc_start on.
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    kl_weight: float = 1e-6
    disc_start: int | None = None
    disc_weight: float = 0.5
    disc_layers: int = 2
    disc_channels: int = 32
    checkpoint_every_n_steps: int = 100
    seed: int = 0  # the autoencoder's own, so diffusion seeds share one autoencoder
    # The diffusion model trains on the posterior mean (False) or a sample of it (True).
    sample_posterior: bool = False
    # Latents are (z - shift_factor) * scaling_factor. None: estimated on the training data for a
    # trained autoencoder (unit variance, as Stable Diffusion did), read from its config for a
    # pretrained one.
    scaling_factor: float | None = None
    shift_factor: float | None = None
    # Encoder and decoder under bfloat16 autocast when they run for the diffusion model (encoding
    # the training latents, decoding samples); training the autoencoder is unaffected.
    bf16: bool = False
    # name=pretrained: a folder (or hub id, with allow_download=true) and its subfolder.
    path: str | None = None
    subfolder: str | None = None
    allow_download: bool = False
    cache_dir: str = ".cache/mjexp/autoencoders"

    def __post_init__(self) -> None:
        if self.name not in NAMES:
            raise ValueError(f"autoencoder.name={self.name!r} is not one of {', '.join(NAMES)}")
        self.block_out_channels = tuple(int(c) for c in self.block_out_channels)
        if not self.block_out_channels or min(self.block_out_channels) < 1:
            raise ValueError(f"autoencoder.block_out_channels={list(self.block_out_channels)} needs positive widths")
        for key in ("layers_per_block", "latent_channels", "norm_num_groups", "steps", "batch_size",
                    "disc_layers", "disc_channels", "checkpoint_every_n_steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"autoencoder.{key}={getattr(self, key)} must be >= 1")
        uneven = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if uneven:
            raise ValueError(
                f"autoencoder.block_out_channels={list(self.block_out_channels)} must all be divisible by "
                f"autoencoder.norm_num_groups={self.norm_num_groups} (group normalisation)"
            )
        if not self.lr > 0 or self.kl_weight < 0 or self.disc_weight < 0:
            raise ValueError(
                f"autoencoder needs lr > 0, kl_weight >= 0, disc_weight >= 0; got lr={self.lr}, "
                f"kl_weight={self.kl_weight}, disc_weight={self.disc_weight}"
            )
        if self.disc_start is not None and self.disc_start < 0:
            raise ValueError(f"autoencoder.disc_start={self.disc_start} must be >= 0 (or null: no adversarial loss)")
        if self.scaling_factor is not None and not self.scaling_factor > 0:
            raise ValueError(f"autoencoder.scaling_factor={self.scaling_factor} must be > 0")
        if self.name == "pretrained" and not self.path:
            raise ValueError(
                "autoencoder=pretrained needs autoencoder.path: a folder saved with AutoencoderKL.save_pretrained "
                "(e.g. a Stable Diffusion pipeline folder with autoencoder.subfolder=vae)"
            )

    @property
    def enabled(self) -> bool:
        return self.name != "none"



def downsampling_factor(block_out_channels: tuple[int, ...] | list[int]) -> int:
    """Pixels per latent pixel along each side of an AutoencoderKL with these level widths."""
    return 2 ** (len(block_out_channels) - 1)
