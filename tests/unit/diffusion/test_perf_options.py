"""Performance options keep the math: a channels-last U-Net is the same function with the same
weights, and the EMA's host-side step count survives checkpoint loading."""

from __future__ import annotations

import torch

from mjexp.diffusion.ema import EMA, ema_decay
from mjexp.diffusion.unet import UNet, UNetSpec
from mjexp.text.base import TextEmbedding


def spec(**kw) -> UNetSpec:
    return UNetSpec(channels=16, channel_mult=[1, 2], context_dim=16, pooled_dim=16, head_dim=8, groups=4, **kw)


def test_channels_last_unet_is_the_same_function() -> None:
    torch.manual_seed(0)
    plain = UNet(spec())
    with torch.no_grad():
        for p in plain.parameters():  # the zero-initialised output layer would make this trivial
            p.add_(0.05 * torch.randn_like(p))
    nhwc = UNet(spec(channels_last=True))
    nhwc.load_state_dict(plain.state_dict())  # same parameter names: checkpoints are interchangeable
    assert nhwc.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(2, 3, 8, 8, generator=g), torch.tensor([3.0, 700.0])
    text = TextEmbedding(torch.randn(2, 4, 16, generator=g), torch.tensor([[True] * 4, [True, True, False, False]]),
                         torch.randn(2, 16, generator=g))
    expected = plain(x, t, text=text)
    torch.testing.assert_close(nhwc(x, t, text=text), expected, atol=1e-5, rtol=1e-4)
    assert expected.abs().max() > 1e-2


def test_ema_step_count_resumes_from_a_loaded_state() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = EMA(model, max_decay=0.99, power=1.0)
    for _ in range(3):
        ema.update(model)
    state = ema.state_dict()
    state["num_updates"] = torch.tensor(10)
    resumed = EMA(model, max_decay=0.99, power=1.0)
    resumed.load_state_dict(state)
    before = resumed.averaged[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.fill_(3.0)
    resumed.update(model)
    decay = ema_decay(11, 0.99, 1.0)  # the 11th update, not the 1st
    torch.testing.assert_close(resumed.averaged[0].weight, decay * before + (1 - decay) * model[0].weight)
    assert int(resumed.num_updates) == 11
    torch.testing.assert_close(resumed.averaged[1].running_mean, torch.full((2,), 3.0))  # buffers are copied


def test_ema_keeps_averaging_its_module_after_it_is_moved_and_loaded() -> None:
    """The averaged tensors are listed at the first update; converting the EMA module (dtype,
    device) and loading a state into it keep those tensor objects, so later updates still land in
    the weights the module computes with and saves."""
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = EMA(model, max_decay=0.5, power=1.0)
    ema.update(model)
    ema.double()
    model.double()
    state = ema.state_dict()
    state["averaged.0.weight"] = torch.zeros(2, 2, dtype=torch.float64)
    ema.load_state_dict(state)
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.fill_(3.0)
    ema.update(model)
    decay = ema_decay(2, 0.5, 1.0)
    assert ema.averaged[0].weight.dtype == torch.float64
    torch.testing.assert_close(ema.averaged[0].weight, (1 - decay) * model[0].weight)
    torch.testing.assert_close(ema.state_dict()["averaged.0.weight"], (1 - decay) * model[0].weight.detach())
    torch.testing.assert_close(ema.averaged[1].running_mean, torch.full((2,), 3.0, dtype=torch.float64))
