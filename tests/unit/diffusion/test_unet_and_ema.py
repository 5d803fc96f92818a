"""U-Net shape/conditioning behaviour and EMA arithmetic."""

import pytest
import torch

from mjexp.diffusion.ema import EMA, ema_decay
from mjexp.diffusion.unet import UNet, UNetSpec, timestep_embedding
from mjexp.text.base import TextEmbedding


def text(b: int, length: int = 5, dim: int = 16, seed: int = 0) -> TextEmbedding:
    g = torch.Generator().manual_seed(seed)
    return TextEmbedding(torch.randn(b, length, dim, generator=g), torch.ones(b, length, dtype=torch.bool), torch.randn(b, dim, generator=g))


def small_unet(**kw) -> UNet:
    spec = UNetSpec(channels=16, channel_mult=[1, 2], context_dim=16, pooled_dim=16, head_dim=8, groups=4, **kw)
    net = UNet(spec)
    # Zero-initialised output layers would make every test below trivially pass; perturb them.
    torch.manual_seed(1)
    for p in net.parameters():
        p.data.add_(0.02 * torch.randn_like(p))
    return net


@pytest.mark.parametrize("resolution", [8, 16, 24])
def test_output_shape_at_any_resolution(resolution: int) -> None:
    net = small_unet()
    x = torch.randn(2, 3, resolution, resolution)
    assert net(x, torch.tensor([3.0, 500.5]), text=text(2)).shape == x.shape


def test_output_depends_on_text_tokens_and_mask() -> None:
    net = small_unet()
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([10.0, 10.0])
    a = net(x, t, text=text(2, seed=0))
    b = net(x, t, text=text(2, seed=1))
    assert (a - b).abs().max() > 1e-4
    masked = text(2)
    masked.mask[:] = False  # all text masked: attention still defined thanks to the null token
    assert torch.isfinite(net(x, t, text=masked)).all()


def test_batch_items_are_independent() -> None:
    net = small_unet().eval()
    x, t, te = torch.randn(3, 3, 8, 8), torch.tensor([1.0, 200.0, 900.0]), text(3)
    full = net(x, t, text=te)
    single = net(x[1:2], t[1:2], text=te.index([1]))
    torch.testing.assert_close(full[1:2], single, atol=1e-5, rtol=1e-5)


def test_image_conditioning_channels_are_required() -> None:
    net = small_unet(image_channels=3)
    x = torch.randn(1, 3, 8, 8)
    assert net(x, torch.tensor([5.0]), text=text(1), image=torch.randn(1, 3, 8, 8)).shape == x.shape
    with pytest.raises(ValueError, match="image_channels=3"):
        net(x, torch.tensor([5.0]), text=text(1))


def test_timestep_embedding_distinguishes_fractional_steps() -> None:
    emb = timestep_embedding(torch.tensor([10.0, 10.5]), 32)
    assert emb.shape == (2, 32) and (emb[0] - emb[1]).abs().max() > 1e-3


def test_ema_follows_its_formula() -> None:
    model = torch.nn.Linear(3, 1, bias=False)
    ema = EMA(model, max_decay=0.9, power=1.0)
    expected = model.weight.detach().clone()
    for step in range(1, 6):
        model.weight.data += 1.0
        ema.update(model)
        d = ema_decay(step, 0.9, 1.0)
        expected = d * expected + (1 - d) * model.weight.detach()
        torch.testing.assert_close(ema.averaged.weight, expected)
    assert int(ema.num_updates) == 5
    assert ema_decay(0, 0.9, 1.0) == 0.0 and ema_decay(10**6, 0.9, 1.0) == 0.9
