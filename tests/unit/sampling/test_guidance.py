"""Classifier-free guidance: scales, schedules, rescale, interval, thresholding, costs, negative prompts."""

from __future__ import annotations

import math

import pytest
import torch

from mjexp.sampling.denoiser import Denoiser
from mjexp.sampling.guidance import (
    Guidance,
    GuidedDenoiser,
    cat_cond,
    dynamic_threshold,
    rescale_guided,
    unconditional_text,
)
from mjexp.sampling.noise import ItemNoise
from mjexp.sampling.samplers import SamplerSettings, sample
from mjexp.text.base import TextEmbedding, TextEncoder
from sampling_helpers import linear_schedule

B = 2


def embedding(value: float, batch: int = B) -> TextEmbedding:
    return TextEmbedding(
        tokens=torch.full((batch, 3, 4), value),
        mask=torch.ones(batch, 3, dtype=torch.bool),
        pooled=torch.full((batch, 4), value),
    )


class RecordingNetwork:
    """An eps-network whose output depends on the text: records every forward's conditioning."""

    parameterization = "eps"

    def __init__(self) -> None:
        self.texts: list[TextEmbedding] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor, text: TextEmbedding) -> torch.Tensor:
        self.texts.append(text)
        return 0.3 * x + text.pooled[:, 0].reshape(-1, 1, 1, 1) * (1 + x.roll(1, dims=-1))


@pytest.fixture()
def setup() -> tuple[RecordingNetwork, Denoiser, dict, dict, torch.Tensor]:
    network = RecordingNetwork()
    denoiser = Denoiser(network, linear_schedule())
    x = torch.randn(B, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    return network, denoiser, {"text": embedding(1.0)}, {"text": embedding(-0.5)}, x


@pytest.mark.parametrize(("scale", "branch"), [(0.0, "uncond"), (1.0, "cond")])
def test_scale_zero_and_one_are_single_branches(setup, scale: float, branch: str) -> None:  # noqa: ANN001
    network, denoiser, cond, uncond, x = setup
    guided = GuidedDenoiser(denoiser, cond, uncond, Guidance(scale=scale))
    pred = guided(x, 2.0)
    reference = denoiser(x, 2.0, cond if branch == "cond" else uncond)
    torch.testing.assert_close(pred.x0, reference.x0, rtol=0, atol=0)
    torch.testing.assert_close(pred.eps, reference.eps, rtol=0, atol=0)
    assert (guided.nfe, guided.network_evals) == (1, 1)
    assert len(network.texts[-1]) == B  # one half only: no wasted forward


def test_cfg_combines_both_branches_in_one_batched_forward(setup) -> None:  # noqa: ANN001
    network, denoiser, cond, uncond, x = setup
    guided = GuidedDenoiser(denoiser, cond, uncond, Guidance(scale=4.0))
    pred = guided(x, 2.0)
    assert len(network.texts) == 1 and len(network.texts[0]) == 2 * B
    c, u = denoiser(x, 2.0, cond), denoiser(x, 2.0, uncond)
    torch.testing.assert_close(pred.x0, u.x0 + 4.0 * (c.x0 - u.x0))
    torch.testing.assert_close(pred.eps, u.eps + 4.0 * (c.eps - u.eps))
    torch.testing.assert_close(x, pred.x0 + 2.0 * pred.eps)  # CFG is linear: the pair stays consistent
    assert (guided.nfe, guided.network_evals) == (1, 2)


def test_rescale_matches_the_paper_on_a_hand_example() -> None:
    # cond = [1, 3] (std sqrt 2), uncond = [1, 1], w = 3: guided = [1, 7] (std 3 sqrt 2), so
    # std(cond) / std(guided) = 1/3 and phi = 0.5 gives 0.5 * [1, 7] / 3 + 0.5 * [1, 7] = [2/3, 14/3].
    cond, uncond = torch.tensor([[1.0, 3.0]]), torch.tensor([[1.0, 1.0]])
    guided = uncond + 3 * (cond - uncond)
    torch.testing.assert_close(rescale_guided(guided, cond, 0.5), torch.tensor([[2 / 3, 14 / 3]]))
    torch.testing.assert_close(rescale_guided(guided, cond, 1.0), torch.tensor([[1 / 3, 7 / 3]]))
    torch.testing.assert_close(rescale_guided(guided, cond, 0.0), guided)


def test_rescale_acts_on_x0_and_rederives_eps(setup) -> None:  # noqa: ANN001
    _, denoiser, cond, uncond, x = setup
    sigma = 2.0
    pred = GuidedDenoiser(denoiser, cond, uncond, Guidance(scale=4.0, rescale=0.7))(x, sigma)
    c, u = denoiser(x, sigma, cond), denoiser(x, sigma, uncond)
    guided_x0 = u.x0 + 4.0 * (c.x0 - u.x0)
    factor = c.x0.std(dim=(1, 2, 3), keepdim=True) / guided_x0.std(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(pred.x0, guided_x0 * (0.7 * factor + 0.3))
    torch.testing.assert_close(pred.eps, (x - pred.x0) / sigma)


def test_interval_switches_at_the_right_sigmas() -> None:
    g = Guidance(scale=3.0, interval=(0.5, 2.0))
    assert g.scale_at(0.5) == 1.0  # the lower end is excluded: (sigma_lo, sigma_hi]
    assert g.scale_at(math.nextafter(0.5, 1)) == 3.0
    assert g.scale_at(2.0) == 3.0
    assert g.scale_at(math.nextafter(2.0, 3)) == 1.0
    assert g.scale_at(math.inf) == 1.0
    assert Guidance(scale=3.0, interval=(0.5, math.inf)).scale_at(math.inf) == 3.0


def test_interval_costs_one_forward_outside_it(setup) -> None:  # noqa: ANN001
    _, denoiser, cond, uncond, _ = setup
    settings = SamplerSettings("euler", 20)
    grid = settings.grid(denoiser.schedule).sigmas[:-1]
    guidance = Guidance(scale=3.0, interval=(0.3, 5.0))
    inside = int(((grid > 0.3) & (grid <= 5.0)).sum())
    assert 0 < inside < settings.steps
    noise = ItemNoise.for_prompts(0, [0], B, (1, 2, 2))
    result = sample(denoiser, noise, cond, uncond, sampler=settings, guidance=guidance)
    assert result.nfe == settings.steps
    assert result.network_evals == settings.steps + inside


def test_linear_schedule_ramps_in_log_sigma() -> None:
    g = Guidance(scale=7.0, schedule="linear", scale_start=1.0, ramp_sigmas=(0.1, 10.0))
    assert g.scale_at(100.0) == 1.0 and g.scale_at(10.0) == 1.0 and g.scale_at(math.inf) == 1.0
    assert g.scale_at(0.1) == 7.0 and g.scale_at(0.01) == 7.0
    assert g.scale_at(1.0) == pytest.approx(4.0)  # geometric midpoint of the ramp: halfway
    assert Guidance(scale=7.0, schedule="linear").scale_at(1000.0) == 1.0  # default start: no guidance


def test_dynamic_threshold_follows_imagen() -> None:
    x0 = torch.stack([torch.linspace(-3, 3, 101), torch.linspace(-0.5, 0.5, 101)]).reshape(2, 1, 1, 101)
    out = dynamic_threshold(x0, 0.9)
    s = torch.quantile(x0[0].abs().flatten(), 0.9)
    torch.testing.assert_close(out[0], x0[0].clamp(-s, s) / s)
    assert float(out.abs().max()) == pytest.approx(1.0)
    torch.testing.assert_close(out[1], x0[1], rtol=0, atol=0)  # inside [-1, 1]: s = 1, unchanged


@pytest.mark.parametrize("sigma", [3.0, math.inf])
def test_thresholding_rederives_eps(sigma: float) -> None:
    class Far:  # predicts x0 = 5 everywhere: far outside the data range
        parameterization = "x0"

        def __call__(self, x: torch.Tensor, t: torch.Tensor, **cond: object) -> torch.Tensor:
            return torch.full_like(x, 5.0)

    schedule = linear_schedule(zero_terminal_snr=math.isinf(sigma))
    x = torch.randn(B, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    pred = GuidedDenoiser(Denoiser(Far(), schedule), {}, None, Guidance(scale=1.0, dynamic_threshold=0.995))(x, sigma)
    torch.testing.assert_close(pred.x0, torch.ones_like(x))
    expected_eps = x if math.isinf(sigma) else (x - pred.x0) / sigma  # at sigma = inf the state is the noise
    torch.testing.assert_close(pred.eps, expected_eps)


def test_costs_of_a_guided_heun_run(setup) -> None:  # noqa: ANN001
    _, denoiser, cond, uncond, _ = setup
    noise = ItemNoise.for_prompts(0, [0], B, (1, 2, 2))
    result = sample(
        denoiser, noise, cond, uncond, sampler=SamplerSettings("heun", 6), guidance=Guidance(scale=2.0)
    )
    assert (result.nfe, result.network_evals) == (11, 22)  # 2 calls per step, 1 into sigma = 0


class FakeEncoder(TextEncoder):
    dim, pooled_dim, max_length = 4, 4, 3

    def __init__(self) -> None:
        super().__init__()
        self.encoded: list[list[str]] = []

    def encode(self, prompts: list[str]) -> TextEmbedding:
        self.encoded.append(list(prompts))
        values = torch.tensor([float(len(p)) for p in prompts])
        return TextEmbedding(
            values[:, None, None].expand(-1, 3, 4).clone(),
            torch.ones(len(prompts), 3, dtype=torch.bool),
            values[:, None].expand(-1, 4).clone(),
        )


def test_negative_prompt_replaces_the_empty_prompt(setup) -> None:  # noqa: ANN001
    network, denoiser, cond, _, x = setup
    encoder = FakeEncoder()
    null = unconditional_text(encoder, B)
    assert encoder.encoded == [[""]] and torch.equal(null.pooled, torch.zeros(B, 4))
    assert torch.equal(unconditional_text(encoder, B, "").pooled, null.pooled)
    negative = unconditional_text(encoder, B, "blurry")
    assert encoder.encoded[-1] == ["blurry", "blurry"]
    GuidedDenoiser(denoiser, cond, {"text": negative}, Guidance(scale=3.0))(x, 1.0)
    seen = network.texts[-1]
    assert torch.equal(seen.pooled[:B], cond["text"].pooled) and torch.equal(seen.pooled[B:], negative.pooled)
    per_item = unconditional_text(encoder, B, ["ugly", ""])
    assert encoder.encoded[-1] == ["ugly", ""] and per_item.pooled[:, 0].tolist() == [4.0, 0.0]
    with pytest.raises(ValueError, match="3 negative prompts for a batch of 2"):
        unconditional_text(encoder, B, ["a", "b", "c"])


def test_cat_cond_batches_every_kind_of_conditioning() -> None:
    a = {"text": embedding(1.0), "image": torch.zeros(B, 3, 2, 2)}
    b = {"text": embedding(2.0), "image": torch.ones(B, 3, 2, 2)}
    both = cat_cond(a, b)
    assert both["text"].tokens.shape[0] == 2 * B and both["image"].shape == (2 * B, 3, 2, 2)
    assert torch.equal(both["image"][B:], b["image"])
    with pytest.raises(ValueError, match="same keys"):
        cat_cond(a, {"text": embedding(2.0)})
    with pytest.raises(TypeError, match="'label'"):
        cat_cond({"label": 3}, {"label": 4})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": -1.0}, "scale must be >= 0"),
        ({"schedule": "cosine"}, "unknown guidance.schedule"),
        ({"scale_start": 2.0}, "needs schedule='linear'"),
        ({"schedule": "linear", "ramp_sigmas": (5.0, 1.0)}, "ramp_sigmas"),
        ({"rescale": 1.5}, r"rescale \(phi\) must be in \[0, 1\]"),
        ({"interval": (2.0, 1.0)}, "interval"),
        ({"dynamic_threshold": 0.0}, "dynamic_threshold"),
    ],
)
def test_invalid_guidance_is_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Guidance(**kwargs)


def test_guidance_without_uncond_is_rejected(setup) -> None:  # noqa: ANN001
    _, denoiser, cond, _, _ = setup
    GuidedDenoiser(denoiser, cond, None, Guidance(scale=1.0))  # fine: never needs it
    with pytest.raises(ValueError, match="uncond=None"):
        GuidedDenoiser(denoiser, cond, None, Guidance(scale=1.0, schedule="linear", scale_start=3.0))
