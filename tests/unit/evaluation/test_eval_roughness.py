"""Roughness and noise share against hand-computed images and an analytic noise level."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evaluation.roughness import gaussian_noise_roughness, noise_share, resized, roughness

FLAT = torch.full((1, 3, 4, 4), 40, dtype=torch.uint8)
CHECKER = ((torch.arange(4).view(4, 1) + torch.arange(4).view(1, 4)) % 2 * 255).to(torch.uint8).expand(1, 3, 4, 4)
EDGE = FLAT.clone()
EDGE[..., :, 2:] = 91  # one vertical edge of 51/255 = 0.2: 1 of 3 horizontal steps, no vertical


def test_roughness_by_hand() -> None:
    assert roughness(FLAT).tolist() == [0.0]
    assert roughness(CHECKER).tolist() == [1.0]
    assert roughness(EDGE).item() == pytest.approx(0.2 / 3 / 2)
    with pytest.raises(ValueError, match="uint8"):
        roughness(FLAT.float())


def test_noise_share_counts_images_rougher_than_twice_the_roughest_reference() -> None:
    generated = torch.cat([FLAT, CHECKER, EDGE, CHECKER])
    share = noise_share(generated, roughness(torch.cat([FLAT, EDGE])), (4, 4))
    assert share.value == 0.5  # the two checkerboards
    assert share.standard_error == pytest.approx(math.sqrt(0.25 / 4))
    assert share.params["threshold"] == pytest.approx(2 * 0.2 / 6)
    assert share.params["n_images"] == 4 and share.params["n_reference"] == 2


def test_other_sizes_are_compared_at_the_reference_size() -> None:
    """A 2x upscaled picture has half the per-pixel roughness of the picture; resized back it is
    the picture again. Noise stays noise at either size."""
    picture = torch.cat([EDGE, FLAT])
    upscaled = picture.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)  # nearest, 8 px
    assert torch.equal(resized(upscaled, (4, 4)), picture)
    assert resized(picture, (4, 4)) is picture
    noise = ((torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)).clamp(-1, 1) + 1) * 127.5).round()
    generated = torch.cat([upscaled, noise.to(torch.uint8)])
    share = noise_share(generated, roughness(picture), (4, 4))
    assert share.value == pytest.approx(1 / 3) and share.params["compared_at"] == [4, 4]


def test_noise_share_is_left_out_when_the_reference_is_too_rough_to_tell() -> None:
    share = noise_share(torch.cat([FLAT, CHECKER]), roughness(CHECKER), (4, 4))  # threshold 2 > noise ~0.41
    assert share.value is None and share.standard_error is None
    assert "too rough" in share.params["not_reported"]
    with pytest.raises(ValueError, match="at least one reference"):
        noise_share(FLAT, torch.empty(0), (4, 4))


def test_gaussian_noise_roughness_matches_the_clamped_normal_integral() -> None:
    """E|c(z1) - c(z2)| / 2 for independent z ~ N(0, 1) and c = clamp to [-1, 1], by quadrature:
    c has atoms of mass P(z > 1) at +-1 and the normal density in between."""
    x = np.linspace(-1, 1, 4001)
    density = np.exp(-x**2 / 2) / math.sqrt(2 * math.pi) * (x[1] - x[0])
    density[[0, -1]] /= 2  # trapezoid ends
    tail = 0.5 * math.erfc(1 / math.sqrt(2))
    values = np.concatenate([[-1.0], x, [1.0]])
    weights = np.concatenate([[tail], density, [tail]])
    expected = float(weights @ np.abs(values[:, None] - values[None, :]) @ weights) / 2
    assert expected == pytest.approx(0.41, abs=0.01)
    assert gaussian_noise_roughness(3, 16, 16) == pytest.approx(expected, abs=0.005)
