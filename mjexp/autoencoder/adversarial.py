"""The patch-based adversarial loss of Stable Diffusion's autoencoder (Esser et al. 2021, VQGAN).

A PatchGAN discriminator (Isola et al. 2017) scores overlapping patches as real or reconstructed;
the discriminator minimises the hinge loss, the autoencoder ``-mean(logits_fake)``, weighted by
``||grad nll|| / (||grad g|| + 1e-4)`` at the decoder's last layer (clamped to [0, 1e4], times
``disc_weight``) so neither term swamps the other, and only from ``disc_start`` on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ADAPTIVE_WEIGHT_EPS = 1e-4
ADAPTIVE_WEIGHT_MAX = 1e4


class PatchDiscriminator(nn.Module):
    """Conv 4x4 stride 2 layers doubling the width (capped at 8x), then two stride-1 layers to one
    logit per patch; batch norm after every layer but the first and last, as in pix2pix."""

    def __init__(self, in_channels: int = 3, channels: int = 32, layers: int = 2):
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        width = channels
        for n in range(1, layers + 1):
            out = channels * min(2**n, 8)
            stride = 2 if n < layers else 1
            blocks += [nn.Conv2d(width, out, 4, stride, 1, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2, True)]
            width = out
        blocks.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.net = nn.Sequential(*blocks)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def hinge_discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def generator_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    return -logits_fake.mean()


def adversarial_active(step: int, disc_start: int | None) -> bool:
    """Whether the adversarial terms count at this optimiser step (never when ``disc_start`` is None)."""
    return disc_start is not None and step >= disc_start


def adaptive_weight(nll_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor, disc_weight: float) -> torch.Tensor:
    """Esser et al.'s balance: the ratio of the two losses' gradient norms at ``last_layer``."""
    nll_grads = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
    g_grads = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = torch.linalg.vector_norm(nll_grads) / (torch.linalg.vector_norm(g_grads) + ADAPTIVE_WEIGHT_EPS)
    return torch.clamp(weight, 0.0, ADAPTIVE_WEIGHT_MAX).detach() * disc_weight
