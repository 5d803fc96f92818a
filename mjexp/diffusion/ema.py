"""Exponential moving average of weights, kept in a separate module (never swapped in).

Keeping the average in its own module means a checkpoint can never capture averaged weights in
place of the raw ones (a known pitfall: resuming would train from the average), and sampling simply uses the EMA module.
The decay warms up as ``1 - (1 + n / inv_gamma) ** -power`` (the schedule of Karras' EDM
"power" EMA as used by diffusers' ``EMAModel``), so short runs are not dominated by the initial
random weights.

An update is one multi-tensor ``lerp`` over all parameters and one multi-tensor copy of the
buffers; the step count lives in a buffer (saved in checkpoints) mirrored by a Python integer, so
computing the decay never reads a GPU tensor back to the host (no device sync per step). The
averaged copy's tensors are listed once and again only after the module is converted or loaded
(a dtype or device move replaces buffer objects): on a small network, walking the module tree
every step cost several times the lerp itself.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay(step: int, max_decay: float, power: float, inv_gamma: float = 1.0) -> float:
    """Decay to use after ``step`` optimizer updates (0 at step 0: the EMA starts as a copy)."""
    if step <= 0:
        return 0.0
    return min(max_decay, 1.0 - (1.0 + step / inv_gamma) ** -power)


class EMA(nn.Module):
    """Holds ``averaged``: a frozen copy of a module updated with ``update()`` after each step."""

    def __init__(self, model: nn.Module, max_decay: float = 0.9999, power: float = 2 / 3) -> None:
        super().__init__()
        if not 0.0 <= max_decay < 1.0:
            raise ValueError(f"ema max_decay must be in [0, 1), got {max_decay}")
        self.averaged = copy.deepcopy(model).requires_grad_(False).eval()
        self.max_decay = max_decay
        self.power = power
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self._count: int | None = 0  # host mirror of num_updates; None = read it again (after loading)
        self._averaged_tensors: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None  # (params, buffers)

    def train(self, mode: bool = True) -> "EMA":
        # The averaged copy is only ever used for evaluation (no dropout).
        super().train(mode)
        self.averaged.eval()
        return self

    def _apply(self, fn, recurse: bool = True) -> "EMA":  # noqa: ANN001 - every .to()/.double()/.cuda()
        self._averaged_tensors = None
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super()._load_from_state_dict(*args, **kwargs)
        self._count = None  # num_updates came from the checkpoint
        self._averaged_tensors = None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        if self._count is None:
            self._count = int(self.num_updates)  # once after loading, not every step
        self._count += 1
        self.num_updates.fill_(self._count)
        decay = ema_decay(self._count, self.max_decay, self.power)
        if self._averaged_tensors is None:
            self._averaged_tensors = (list(self.averaged.parameters()), list(self.averaged.buffers()))
        ema_params, ema_buffers = self._averaged_tensors
        # lerp_(target, w): ema += w * (p - ema), i.e. ema = decay * ema + (1 - decay) * p
        torch._foreach_lerp_(ema_params, list(model.parameters()), 1.0 - decay)
        if ema_buffers:
            torch._foreach_copy_(ema_buffers, list(model.buffers()))
