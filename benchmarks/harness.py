"""Timing and memory measurement shared by every benchmark suite.

Fairness rules the suites rely on (issue 7): both sides run in one process with the same thread
count, dtype and compile setting; each candidate is warmed up first; repetitions are interleaved
(A B, then B A, ...) so slow drift of a shared machine's load hits both sides alike; the reported
time is the median. Device work is synchronised before and after a timed call, never inside it.
"""

from __future__ import annotations

import platform
import statistics
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {cpu_name()}"


@dataclass(frozen=True)
class Environment:
    """What a measurement depends on; printed with every run and recorded in every row."""

    device: str
    threads: int
    dtype: str
    compile: bool
    versions: dict[str, str]

    @classmethod
    def current(cls, device: torch.device, dtype: str, compile: bool) -> "Environment":
        import diffusers
        import torch_fidelity

        versions = {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "torch-fidelity": torch_fidelity.__version__,
        }
        return cls(device_name(device), torch.get_num_threads(), dtype, compile, versions)

    def describe(self) -> str:
        versions = ", ".join(f"{k} {v}" for k, v in self.versions.items())
        return (
            f"device {self.device}; {self.threads} threads; dtype {self.dtype}; "
            f"compile {'on' if self.compile else 'off'}; {versions}"
        )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    candidates: Mapping[str, Callable[[], Any]], repeats: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per call of each candidate: ``warmup`` untimed calls each, then ``repeats`` rounds
    in alternating order (forward, then reversed), one timed call per candidate per round."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    names = list(candidates)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        for name in names if round_index % 2 == 0 else reversed(names):
            synchronize(device)
            start = time.perf_counter()
            candidates[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


class _LiveTensorBytes(TorchDispatchMode):
    """Counts the bytes of tensor storages created by ops while active, and the peak of their sum.

    Storages are released through weakref finalizers (PyTorch keeps one Python object per
    storage), so views and in-place results are counted once and freed memory leaves the count.
    Ops' internal workspaces are invisible; the same blind spot applies to both sides.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                storage = tensor.untyped_storage()
                key = storage._cdata
                if key not in self.live:
                    self.live[key] = storage.nbytes()
                    self.current += storage.nbytes()
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(storage, self._release, key)
        return out


def peak_memory_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak bytes allocated by one call of ``fn`` above what was allocated before it.

    CUDA: the caching allocator's peak statistics. CPU: live tensor storages created during the
    call (:class:`_LiveTensorBytes`), since the CPU allocator keeps no statistics.
    """
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    counter = _LiveTensorBytes()
    with counter:
        fn()
    return counter.peak


@dataclass(frozen=True)
class Comparison:
    """One side-by-side result: ``ours`` and ``theirs`` in ``unit`` (higher is better unless
    ``lower_is_better``); ``ratio`` is always ours / theirs of the raw values."""

    suite: str
    case: str
    metric: str
    unit: str
    ours: float
    theirs: float
    lower_is_better: bool = False
    notes: str = ""
    spread: dict[str, str] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.ours / self.theirs if self.theirs else float("nan")


def throughput(items: int, seconds: list[float]) -> float:
    """Items per second at the median time."""
    return items / statistics.median(seconds)


def spread(items: int, seconds: list[float]) -> str:
    """The range of per-repetition throughputs, to show the noise next to the median."""
    return f"{items / max(seconds):.4g}-{items / min(seconds):.4g}"


def format_value(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    return f"{value:.4g}"


def markdown_table(rows: list[Comparison], device: str) -> str:
    """The comparisons as a Markdown table (ours, theirs, ratio ours / theirs), device in every row."""
    head = ("device", "suite", "case", "metric", "ours", "diffusers / torch-fidelity", "ours / theirs", "notes")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        ours = format_value(row.ours) + (f" ({row.spread['ours']})" if "ours" in row.spread else "")
        theirs = format_value(row.theirs) + (f" ({row.spread['theirs']})" if "theirs" in row.spread else "")
        direction = ", lower is better" if row.lower_is_better else ""
        lines.append(
            f"| {device} | {row.suite} | {row.case} | {row.metric} [{row.unit}{direction}] | {ours} | {theirs} | "
            f"{format_value(row.ratio)} | {row.notes} |"
        )
    return "\n".join(lines)
