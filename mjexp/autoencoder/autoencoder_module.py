"""Training an ``AutoencoderKL`` with the Stable Diffusion autoencoder recipe.

Per batch: encode, sample the posterior, decode; the autoencoder minimises the L1 reconstruction
error summed over pixels (averaged over images) plus ``kl_weight`` times the KL divergence to
N(0, I), and from ``disc_start`` on the adaptively weighted generator loss of
mjexp.autoencoder.adversarial; the discriminator then takes its own hinge-loss step on the same
batch. Both use Adam with betas (0.5, 0.9), as taming-transformers and latent-diffusion do.
Stable Diffusion also learns a global log-variance for the reconstruction term and adds LPIPS;
neither is here (LPIPS needs backbone weights that cannot be downloaded offline).
"""

from __future__ import annotations

import lightning as L
import torch

from mjexp.autoencoder.adversarial import (
    PatchDiscriminator,
    adaptive_weight,
    adversarial_active,
    generator_loss,
    hinge_discriminator_loss,
)
from mjexp.autoencoder.codec import build_autoencoder_kl
from mjexp.autoencoder.autoencoder_settings import AutoencoderSettings

ADAM_BETAS = (0.5, 0.9)


def psnr(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of [-1, 1] images (peak-to-peak 2), averaged over images."""
    mse = (images - reconstructions.clamp(-1, 1)).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(4.0 / mse.clamp_min(1e-12))).mean()


class AutoencoderModule(L.LightningModule):
    """Counts its own updates (``updates``, saved in checkpoints) and stops after ``settings.steps``:
    with two optimisers Lightning's ``global_step`` counts both."""

    def __init__(self, settings: AutoencoderSettings, resolution: int):
        super().__init__()
        self.settings = settings
        self.automatic_optimization = False
        self.vae = build_autoencoder_kl(settings, resolution)
        self.discriminator = (
            PatchDiscriminator(3, settings.disc_channels, settings.disc_layers) if settings.disc_start is not None else None
        )
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def losses(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The autoencoder's loss on a batch and what to log; the reconstructions under ``rec``."""
        posterior = self.vae.encode(images).latent_dist
        rec = self.vae.decode(posterior.sample()).sample
        nll = (images - rec).abs().flatten(1).sum(1).mean()
        kl = posterior.kl().mean()
        loss = nll + self.settings.kl_weight * kl
        logs = {"nll": nll.detach(), "kl": kl.detach(), "rec": rec, "psnr": psnr(images, rec.detach())}
        if self.discriminator is not None and adversarial_active(int(self.updates), self.settings.disc_start):
            g_loss = generator_loss(self.discriminator(rec))
            weight = adaptive_weight(nll, g_loss, self.vae.decoder.conv_out.weight, self.settings.disc_weight)
            loss = loss + weight * g_loss
            logs.update(g_loss=g_loss.detach(), d_weight=weight)
        return loss, logs

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opt_ae, *opt_d = self.optimizers() if self.discriminator is not None else [self.optimizers()]
        images = batch["image"]
        loss, logs = self.losses(images)
        opt_ae.zero_grad()
        self.manual_backward(loss)
        opt_ae.step()
        if opt_d and adversarial_active(int(self.updates), self.settings.disc_start):
            rec = logs["rec"].detach()
            d_loss = hinge_discriminator_loss(self.discriminator(images), self.discriminator(rec))
            opt_d[0].zero_grad()
            self.manual_backward(d_loss)
            opt_d[0].step()
            self.log("autoencoder/d_loss", d_loss.detach())
        self.updates += 1
        self.log("autoencoder/loss", loss.detach(), prog_bar=True)
        for key in ("nll", "kl", "psnr", "g_loss", "d_weight"):
            if key in logs:
                self.log(f"autoencoder/{key}", logs[key])
        if int(self.updates) >= self.settings.steps:
            self.trainer.should_stop = True

    def configure_optimizers(self):
        opt_ae = torch.optim.Adam(self.vae.parameters(), lr=self.settings.lr, betas=ADAM_BETAS)
        if self.discriminator is None:
            return opt_ae
        return [opt_ae, torch.optim.Adam(self.discriminator.parameters(), lr=self.settings.lr, betas=ADAM_BETAS)]
