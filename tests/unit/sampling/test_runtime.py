"""Sampling runtime options (precision, compile, CUDA graphs) change how the network runs, never
what the sampler computes; and the guided loop does its per-call work only once."""

from __future__ import annotations

import pytest
import torch

from mjexp.diffusion.unet import UNet, UNetSpec
from mjexp.sampling.denoiser import Denoiser
from mjexp.sampling.guidance import Guidance, GuidedDenoiser
from mjexp.sampling.guidance_sampler import GuidanceSampler
from mjexp.sampling.noise import ItemNoise
from mjexp.sampling.runtime import CudaGraphNetwork, Runtime
from mjexp.sampling.samplers import SamplerSettings, sample
from mjexp.text.base import TextEmbedding
from mjexp.text.tiny import TinyTextEncoder
from sampling_helpers import ToyNetwork, linear_schedule

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def tiny_sampler(runtime: Runtime, sampler: str = "dpmpp_2m") -> GuidanceSampler:
    torch.manual_seed(0)
    encoder = TinyTextEncoder(width=16, layers=1, heads=2, max_length=8)
    unet = UNet(UNetSpec(channels=8, channel_mult=[1, 2], head_dim=8, groups=4, context_dim=16, pooled_dim=16))
    with torch.no_grad():
        for p in unet.parameters():  # the zero-initialised output layer would hide any difference
            p.add_(0.05 * torch.randn_like(p))
    return GuidanceSampler(unet, encoder, linear_schedule(), 8, SamplerSettings(sampler, 4), Guidance(scale=3.0),
                           runtime=runtime)


def test_precision_choices_and_autocast_dtype() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert Runtime().autocast_dtype(cpu) is None and Runtime().autocast_dtype(cuda) is torch.bfloat16
    assert Runtime("32").autocast_dtype(cuda) is None and Runtime("bf16").autocast_dtype(cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="precision 'fp8'.*auto, 32 or bf16"):
        Runtime("fp8")  # type: ignore[arg-type]


def test_cuda_graphs_refuse_a_cpu_device() -> None:
    with pytest.raises(ValueError, match="cuda_graphs=true needs a CUDA device"):
        Runtime(cuda_graphs=True).network(torch.nn.Identity(), torch.device("cpu"))
    with pytest.raises(ValueError, match="every input on a CUDA device"):
        CudaGraphNetwork(torch.nn.Identity())(torch.zeros(1), torch.zeros(1))


def test_bf16_network_output_does_not_lower_the_state_dtype() -> None:
    network = ToyNetwork("eps")
    half = lambda x, t, **cond: network(x, t).to(torch.bfloat16)  # noqa: E731 - a network under autocast
    pred = Denoiser(half, linear_schedule(), "eps")(torch.randn(2, 3, 4, 4), 3.0, {})
    assert pred.x0.dtype == pred.eps.dtype == torch.float32


def test_bf16_runtime_runs_the_network_in_bf16_only() -> None:
    module = tiny_sampler(Runtime("bf16"))
    seen = []
    module.unet.register_forward_hook(lambda m, args, kwargs, out: seen.append(out.dtype), with_kwargs=True)
    items, prompts = [(0, 0), (1, 0)], ["a red circle", "a blue square"]
    rounded = module.generate(prompts, items)["images"]
    exact = tiny_sampler(Runtime("32")).generate(prompts, items)["images"]
    assert set(seen) == {torch.bfloat16} and rounded.dtype == torch.float32
    assert torch.isfinite(rounded).all() and (rounded - exact).abs().max() > 0
    # One forward: bf16 autocast only rounds (relative error of a few bf16 ulps).
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([10.0, 500.0])
    text = module.text_encoder.encode(prompts)
    with torch.no_grad():
        reference = module.unet(x, t, text=text)
        with module.runtime.autocast(torch.device("cpu")):
            approx = module.network(x, t, text=text).float()
    assert ((approx - reference).norm() / reference.norm()) < 0.03


def test_cond_and_uncond_are_batched_once_per_sampling_call() -> None:
    def text(seed: int) -> TextEmbedding:
        g = torch.Generator().manual_seed(seed)
        return TextEmbedding(torch.randn(2, 3, 4, generator=g), torch.ones(2, 3, dtype=torch.bool), torch.randn(2, 4, generator=g))

    batches = []

    def network(x: torch.Tensor, t: torch.Tensor, text: TextEmbedding) -> torch.Tensor:
        batches.append(text)
        return ToyNetwork()(x, t)

    guided = GuidedDenoiser(Denoiser(network, linear_schedule(), "eps"), {"text": text(0)}, {"text": text(1)},
                            Guidance(scale=2.0))
    x = torch.randn(2, 3, 4, 4)
    guided(x, 5.0)
    guided(x, 2.0)
    assert batches[0] is batches[1]  # the same [cond; uncond] embedding object, concatenated once
    torch.testing.assert_close(batches[0].tokens, torch.cat([text(0).tokens, text(1).tokens]))


@pytest.mark.slow
def test_compiled_network_samples_the_same_images() -> None:
    items = [(0, 0), (0, 1)]
    eager = tiny_sampler(Runtime()).generate(["a red circle"] * 2, items)["images"]
    compiled = tiny_sampler(Runtime(compile=True)).generate(["a red circle"] * 2, items)["images"]
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=0)


@pytest.mark.gpu
@CUDA
def test_cuda_graphs_replay_the_eager_network() -> None:
    unet = tiny_sampler(Runtime()).unet.cuda().eval()
    graphed = CudaGraphNetwork(unet)
    g = torch.Generator().manual_seed(0)
    text = TextEmbedding(torch.randn(2, 5, 16, generator=g), torch.ones(2, 5, dtype=torch.bool),
                         torch.randn(2, 16, generator=g)).to("cuda")
    with torch.inference_mode():
        for step in range(3):  # new values each call: the replay must read the copied inputs
            x, t = torch.randn(2, 3, 8, 8, device="cuda"), torch.full((2,), 100.0 * step + 1, device="cuda")
            torch.testing.assert_close(graphed(x, t, text=text), unet(x, t, text=text), atol=1e-5, rtol=1e-5)
    assert len(graphed.graphs) == 1


@pytest.mark.gpu
@CUDA
@pytest.mark.parametrize("runtime", [Runtime(), Runtime(cuda_graphs=True)])
def test_gpu_sampling_loop_never_syncs_and_matches_cpu(runtime: Runtime) -> None:
    items, prompts = ((0, 0), (1, 0)), ["a red circle", "a blue square"]
    on_cpu = tiny_sampler(Runtime("32"), "euler_ancestral").generate(prompts, list(items))["images"]
    module = tiny_sampler(runtime, "euler_ancestral").cuda()
    cond = {"text": module.text_encoder.encode(prompts)}
    uncond = {"text": module.text_encoder.null_embedding(2)}
    denoiser = Denoiser(module.network, module.schedule, "eps")

    def loop() -> torch.Tensor:
        with torch.inference_mode(), runtime.autocast(torch.device("cuda")):
            noise = ItemNoise(0, items, (3, 8, 8), device="cuda")
            return sample(denoiser, noise, cond, uncond, sampler=module.sampler, guidance=module.guidance).images

    loop()  # warm-up: lazy CUDA initialisation, graph recording
    torch.cuda.set_sync_debug_mode("error")
    try:
        on_gpu = loop()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(on_gpu.clamp(-1, 1).cpu(), on_cpu, atol=0.05, rtol=0)  # bf16 autocast on the GPU


@pytest.mark.gpu
@CUDA
def test_item_noise_on_gpu_is_the_cpu_noise() -> None:
    noise = ItemNoise(3, ((0, 0), (4, 2)), (3, 4, 4))
    on_gpu = ItemNoise(3, ((0, 0), (4, 2)), (3, 4, 4), device="cuda")
    torch.testing.assert_close(on_gpu.step(5).cpu(), noise.step(5), atol=0, rtol=0)
