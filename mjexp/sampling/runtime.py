"""How the network runs while sampling: precision, ``torch.compile`` and CUDA graphs.

None of these change the sampling algorithm; they change how fast the network's forward runs (and,
for bf16, its rounding). The sampler state and the guidance and sampler arithmetic stay in the
state's own dtype (float32): autocast only affects the ops inside the network.

CUDA graphs (:class:`CudaGraphNetwork`) record one forward per input signature (shapes, dtypes,
device) and afterwards replay it after copying the new inputs into the recorded buffers, which
removes the per-kernel launch cost that dominates small networks on a GPU. A sampling call has
only a few signatures (cond+uncond batch, cond-only batch, the hires size), so a handful of graphs
serve the whole prompt set.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal

import torch

from mjexp.text.base import TextEmbedding

Precision = Literal["auto", "32", "bf16"]
Network = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Runtime:
    """``precision``: ``auto`` = bf16 autocast on CUDA and float32 elsewhere; ``32``; ``bf16``
    (autocast on any device). ``compile``: ``torch.compile`` the U-Net. ``cuda_graphs``: replay
    recorded CUDA graphs of the forward (CUDA only; with ``compile`` this is compile's
    ``reduce-overhead`` mode)."""

    precision: Precision = "auto"
    compile: bool = False
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "32", "bf16"):
            raise ValueError(f"unknown sampling precision {self.precision!r}; choose auto, 32 or bf16")

    def autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        """The autocast dtype on ``device``, or None for plain float32."""
        if self.precision == "bf16" or (self.precision == "auto" and device.type == "cuda"):
            return torch.bfloat16
        return None

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        dtype = self.autocast_dtype(device)
        if dtype is None:
            return contextlib.nullcontext()
        # CUDA graphs replay recorded kernels: autocast's weight-cast cache must not outlive one
        # forward (PyTorch's CUDA-graph notes), so it is disabled with graphs.
        return torch.autocast(device.type, dtype=dtype, cache_enabled=not self.cuda_graphs)

    def network(self, unet: torch.nn.Module, device: torch.device) -> Network:
        """The callable the samplers use in place of ``unet``."""
        if self.cuda_graphs and device.type != "cuda":
            raise ValueError(f"cuda_graphs=true needs a CUDA device, but sampling runs on {device}")
        if self.compile and self.cuda_graphs:
            return CompiledGraphNetwork(unet)
        if self.compile:
            return torch.compile(unet)
        if self.cuda_graphs:
            return CudaGraphNetwork(unet)
        return unet


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, TextEmbedding):
        return [value.tokens, value.mask, value.pooled]
    if isinstance(value, torch.Tensor):
        return [value]
    raise TypeError(f"cannot record network input of type {type(value).__name__} in a CUDA graph")


def _rebuild(template: Any, tensors: Iterator[torch.Tensor]) -> Any:
    if isinstance(template, TextEmbedding):
        return TextEmbedding(next(tensors), next(tensors), next(tensors))
    return next(tensors)


class CudaGraphNetwork:
    """``network(x, t, **cond)`` replayed from CUDA graphs, one per input signature.

    Outputs are copies, so a prediction kept across steps (DPM-Solver's previous x0) is never
    overwritten by the next replay. Inputs may change values, not shapes, between replays.
    """

    def __init__(self, network: torch.nn.Module, warmup: int = 2) -> None:
        self.network = network
        self.parameterization = getattr(network, "parameterization", None)
        self.warmup = warmup
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list[torch.Tensor], torch.Tensor]] = {}

    def __call__(self, x: torch.Tensor, t: torch.Tensor, **cond: Any) -> torch.Tensor:
        names = sorted(cond)
        inputs = [x, t] + [tensor for name in names for tensor in _tensors(cond[name])]
        if any(tensor.device.type != "cuda" for tensor in inputs):
            raise ValueError("CudaGraphNetwork needs every input on a CUDA device")
        key = (tuple(names),) + tuple((tuple(v.shape), v.stride(), v.dtype, v.device) for v in inputs)
        if key not in self.graphs:
            self.graphs[key] = self._record(inputs, names, cond)
        graph, static_inputs, static_output = self.graphs[key]
        for static, value in zip(static_inputs, inputs):
            static.copy_(value)
        graph.replay()
        return static_output.clone()

    def _call(self, inputs: list[torch.Tensor], names: list[str], cond: dict[str, Any]) -> torch.Tensor:
        tensors = iter(inputs[2:])
        rebuilt = {name: _rebuild(cond[name], tensors) for name in names}
        return self.network(inputs[0], inputs[1], **rebuilt)

    def _record(self, inputs: list[torch.Tensor], names: list[str], cond: dict[str, Any]):  # noqa: ANN202
        static_inputs = [value.clone() for value in inputs]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the graph (cuDNN/cuBLAS autotuning, lazy init)
            for _ in range(self.warmup):
                self._call(static_inputs, names, cond)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_output = self._call(static_inputs, names, cond)
        return graph, static_inputs, static_output


class CompiledGraphNetwork:
    """``torch.compile(mode="reduce-overhead")`` (compiled kernels in CUDA graph trees).

    Every call starts a new graph step and copies the output out of the graphs' memory pool,
    which the next replay reuses, for the same reason as :class:`CudaGraphNetwork`.
    """

    def __init__(self, network: torch.nn.Module) -> None:
        self.compiled = torch.compile(network, mode="reduce-overhead")
        self.parameterization = getattr(network, "parameterization", None)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, **cond: Any) -> torch.Tensor:
        torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(x, t, **cond).clone()
