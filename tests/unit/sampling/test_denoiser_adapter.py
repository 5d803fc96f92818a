"""The network adapter: VE state -> VP network input, sigma -> timestep, output -> (x0, eps)."""

from __future__ import annotations

import math

import pytest
import torch

from mjexp.sampling.denoiser import Denoiser, vp_coefficients_at
from sampling_helpers import ToyNetwork, linear_schedule


class Spy(ToyNetwork):
    def __init__(self, parameterization: str) -> None:
        super().__init__(parameterization)
        self.inputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor, **cond: object) -> torch.Tensor:
        self.inputs.append((x, t))
        return super().__call__(x, t)


X = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("parameterization", ["eps", "v", "x0"])
def test_network_sees_the_vp_input_and_its_timestep(parameterization: str) -> None:
    schedule = linear_schedule()
    t = 417
    sigma = float(schedule.sigmas[t])
    spy = Spy(parameterization)
    pred = Denoiser(spy, schedule)(X, sigma, {})  # type: ignore[arg-type]
    x_vp, t_seen = spy.inputs[0]
    alpha_bar = float(schedule.alphas_cumprod[t])
    torch.testing.assert_close(x_vp, X * math.sqrt(alpha_bar))
    assert t_seen.shape == (3,) and t_seen.dtype == torch.float64
    assert float(t_seen[0]) == pytest.approx(t, abs=1e-9)
    torch.testing.assert_close(X, pred.x0 + sigma * pred.eps)  # any parameterisation: x = x0 + sigma eps


def test_explicit_timestep_is_passed_through() -> None:
    spy = Spy("eps")
    Denoiser(spy, linear_schedule())(X.float(), 1.0, {}, t=123.0)  # type: ignore[arg-type]
    assert spy.inputs[0][1].tolist() == [123.0] * 3 and spy.inputs[0][1].dtype == torch.float32


@pytest.mark.parametrize("parameterization", ["v", "x0"])
def test_at_infinite_sigma_the_state_is_the_network_input(parameterization: str) -> None:
    schedule = linear_schedule(zero_terminal_snr=True)
    spy = Spy(parameterization)
    pred = Denoiser(spy, schedule)(X, math.inf, {})  # type: ignore[arg-type]
    x_vp, t_seen = spy.inputs[0]
    assert x_vp is X and t_seen.tolist() == [999.0] * 3
    torch.testing.assert_close(pred.eps, X)  # at zero SNR the input is pure noise
    output = ToyNetwork(parameterization)(X, t_seen)
    torch.testing.assert_close(pred.x0, -output if parameterization == "v" else output)


def test_vp_coefficients() -> None:
    assert vp_coefficients_at(math.inf) == (0.0, 1.0)
    alpha, sigma_vp = vp_coefficients_at(2.0)
    assert alpha**2 + sigma_vp**2 == pytest.approx(1.0) and sigma_vp / alpha == pytest.approx(2.0)


def test_invalid_use_is_rejected() -> None:
    with pytest.raises(ValueError, match="parameterization="):
        Denoiser(lambda x, t: x, linear_schedule())
    with pytest.raises(ValueError, match="zero_terminal_snr=true cannot be used with parameterization=eps"):
        Denoiser(ToyNetwork("eps"), linear_schedule(zero_terminal_snr=True))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sigma > 0"):
        Denoiser(ToyNetwork("eps"), linear_schedule())(X, 0.0, {})  # type: ignore[arg-type]
