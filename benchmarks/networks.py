"""Network suite: our U-Net against a diffusers ``UNet2DConditionModel`` of equal size and FLOPs.

The diffusers model is configured block for block like ours (the mapping is in
:func:`matching_diffusers_unet`): the same channels, residual blocks per level, attention levels,
heads, transformer depth, GroupNorm groups, AdaGN scale-shift time conditioning
(``resnet_time_scale_shift="scale_shift"``), linear projections into the transformer
(``use_linear_projection``), GEGLU feed-forward, and the pooled text embedding added to the time
embedding through one linear layer (``class_embed_type="simple_projection"``). What still
differs: ours prepends a learned always-visible null token to the text (one more key/value per
cross-attention) and fuses the key and value projections into one matrix; diffusers uses
separate ``to_k``/``to_v`` and an additive -10000 bias for the text mask where ours passes a
boolean mask to SDPA. Parameters and FLOPs are measured, not assumed, and printed side by side.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.harness import Comparison, interleaved, peak_memory_bytes, spread, throughput
from mjexp.diffusion.unet import UNet, UNetSpec
from mjexp.text.base import TextEmbedding

CONF_UNET = Path(__file__).resolve().parent.parent / "conf" / "unet"
# The resolution each preset is meant for (the comments of conf/unet/*.yaml).
PRESET_RESOLUTION = {"tiny": 16, "small": 32, "base": 64}
# The default conditioning: the domain CLIP's text tower (conf/text_encoder/domain_clip.yaml).
TEXT_LENGTH, TEXT_DIM, POOLED_DIM = 24, 64, 64
# Dense bf16 tensor-core peak (FLOP/s) by device name fragment, for model FLOPs utilisation.
PEAK_BF16_FLOPS = {"H200": 989.4e12, "H100 SXM": 989.4e12, "H100 NVL": 835.0e12, "H100 PCIe": 756.0e12,
                   "H100": 989.4e12, "A100": 312.0e12}


def preset_spec(name: str, channels_last: bool = False) -> UNetSpec:
    """The ``conf/unet/<name>.yaml`` preset conditioned on the default text encoder's widths."""
    path = CONF_UNET / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown U-Net preset {name!r}; choose one of {sorted(p.stem for p in CONF_UNET.glob('*.yaml'))}")
    fields = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    fields.pop("defaults", None)
    return UNetSpec(context_dim=TEXT_DIM, pooled_dim=POOLED_DIM, channels_last=channels_last, **fields)


def matching_diffusers_unet(spec: UNetSpec, resolution: int) -> torch.nn.Module:
    """A diffusers ``UNet2DConditionModel`` with our block structure (see the module docstring)."""
    from diffusers import UNet2DConditionModel

    widths = tuple(spec.channels * m for m in spec.channel_mult)
    down = tuple("CrossAttnDownBlock2D" if i in spec.attention_levels else "DownBlock2D" for i in range(len(widths)))
    up = tuple(name.replace("Down", "Up") for name in reversed(down))
    return UNet2DConditionModel(
        sample_size=resolution,
        in_channels=spec.in_channels + spec.image_channels,
        out_channels=spec.out_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=widths,
        layers_per_block=spec.num_res_blocks,
        transformer_layers_per_block=spec.transformer_depth,
        # diffusers' "attention_head_dim" is the number of heads (diffusers issue #2011).
        attention_head_dim=tuple(max(1, w // spec.head_dim) for w in widths),
        cross_attention_dim=spec.context_dim,
        norm_num_groups=spec.groups,
        resnet_time_scale_shift="scale_shift",
        use_linear_projection=True,
        class_embed_type="simple_projection" if spec.pooled_dim else None,
        projection_class_embeddings_input_dim=spec.pooled_dim or None,
        dropout=spec.dropout,
    )


@dataclass
class Inputs:
    x: torch.Tensor
    t: torch.Tensor
    text: TextEmbedding
    target: torch.Tensor


def make_inputs(batch: int, resolution: int, device: torch.device, seed: int = 0) -> Inputs:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, resolution, resolution, generator=g)
    t = torch.rand(batch, generator=g) * 999
    text = TextEmbedding(
        torch.randn(batch, TEXT_LENGTH, TEXT_DIM, generator=g),
        torch.arange(TEXT_LENGTH).expand(batch, -1) < torch.randint(4, TEXT_LENGTH + 1, (batch, 1), generator=g),
        torch.randn(batch, POOLED_DIM, generator=g),
    )
    target = torch.randn(x.shape, generator=g)
    return Inputs(x.to(device), t.to(device), text.to(device), target.to(device))


Call = Callable[[torch.nn.Module, Inputs], torch.Tensor]


def our_call(model: torch.nn.Module, inputs: Inputs) -> torch.Tensor:
    return model(inputs.x, inputs.t, text=inputs.text)


def diffusers_call(channels_last: bool) -> Call:
    """diffusers' call convention; a channels-last model gets channels-last input (ours converts itself)."""

    def call(model: torch.nn.Module, inputs: Inputs) -> torch.Tensor:
        x = inputs.x.contiguous(memory_format=torch.channels_last) if channels_last else inputs.x
        return model(
            x, inputs.t, encoder_hidden_states=inputs.text.tokens, class_labels=inputs.text.pooled,
            encoder_attention_mask=inputs.text.mask.to(x.dtype), return_dict=False,
        )[0]

    return call


@dataclass
class Side:
    """One network ready to time: a forward closure and a training-step closure."""

    model: torch.nn.Module
    forward: Callable[[], torch.Tensor]
    train_step: Callable[[], None]


def autocast_context(device: torch.device) -> Any:
    """bf16 autocast on CUDA (both sides), nothing on the CPU (float32 both sides)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def make_side(
    model: torch.nn.Module,
    call: Call,
    forward_inputs: Inputs,
    train_inputs: Inputs,
    device: torch.device,
    compile: bool,
) -> Side:
    """Forward under inference mode; a training step = forward, MSE, backward, AdamW (foreach)."""
    model = model.to(device)
    runner = torch.compile(model) if compile else model
    fn = lambda inputs: call(runner, inputs)  # noqa: E731
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)

    def forward() -> torch.Tensor:
        model.eval()
        with torch.inference_mode(), autocast_context(device):
            return fn(forward_inputs)

    def train_step() -> None:
        model.train()
        with autocast_context(device):
            loss = F.mse_loss(fn(train_inputs).float(), train_inputs.target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return Side(model, forward, train_step)


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call as counted by ``torch.utils.flop_counter`` (matmuls, convolutions, SDPA)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Both networks zero-initialise their last layers; give every weight a small random offset
    so no branch is trivially zero (equal work on both sides either way)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g).to(p))
    return model


@dataclass(frozen=True)
class NetworkCase:
    preset: str
    forward_batch: int
    train_batch: int
    channels_last: bool = False

    @property
    def label(self) -> str:
        return f"{self.preset} {PRESET_RESOLUTION[self.preset]}px" + (" channels_last" if self.channels_last else "")


def ema_comparison(model: torch.nn.Module, label: str, device: torch.device, repeats: int, warmup: int) -> Comparison:
    """Our EMA update (one multi-tensor lerp, no host sync) vs diffusers' ``EMAModel.step`` with
    the same warm-up schedule, on the same parameters; diffusers' default is a per-tensor loop."""
    from diffusers.training_utils import EMAModel

    from mjexp.diffusion.ema import EMA

    ours = EMA(model)
    default = EMAModel(model.parameters(), use_ema_warmup=True, power=2 / 3)
    foreach = EMAModel(model.parameters(), use_ema_warmup=True, power=2 / 3, foreach=True)
    for shadow in (default, foreach):
        shadow.to(device)
    with torch.no_grad():
        times = interleaved({"ours": lambda: ours.update(model), "theirs": lambda: default.step(model.parameters()),
                             "foreach": lambda: foreach.step(model.parameters())}, repeats, warmup, device)
    versus_foreach = statistics.median(times["foreach"]) / statistics.median(times["ours"])
    return Comparison("network", label, "EMA updates", "updates/s", throughput(1, times["ours"]),
                      throughput(1, times["theirs"]),
                      notes=f"diffusers EMAModel default (per-tensor loop); vs its foreach=True: {versus_foreach:.3g}")


def peak_bf16_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def run_network_case(
    case: NetworkCase, device: torch.device, compile: bool, repeats: int, warmup: int
) -> tuple[list[Comparison], dict[str, Any]]:
    """Params, FLOPs, forward and training throughput and peak memory of one preset, both sides."""
    resolution = PRESET_RESOLUTION[case.preset]
    spec = preset_spec(case.preset)
    torch.manual_seed(0)
    ours = perturbed(UNet(replace(spec, channels_last=case.channels_last)))
    theirs = perturbed(matching_diffusers_unet(spec, resolution))
    if case.channels_last:
        theirs = theirs.to(memory_format=torch.channels_last)
    fwd_in = make_inputs(case.forward_batch, resolution, device)
    train_in = make_inputs(case.train_batch, resolution, device, seed=1)
    sides = {
        "ours": make_side(ours, our_call, fwd_in, train_in, device, compile),
        "theirs": make_side(theirs, diffusers_call(case.channels_last), fwd_in, train_in, device, compile),
    }
    one = make_inputs(1, resolution, device, seed=2)
    eager = {"ours": lambda: our_call(ours, one), "theirs": lambda: diffusers_call(case.channels_last)(theirs, one)}
    with torch.inference_mode():
        forward_flops = {name: flops(fn) for name, fn in eager.items()}
    params = {name: parameter_count(side.model) for name, side in sides.items()}

    forward_times = interleaved({n: s.forward for n, s in sides.items()}, repeats, warmup, device)
    train_times = interleaved({n: s.train_step for n, s in sides.items()}, repeats, warmup, device)
    # The CPU memory counter is a dispatch mode, which compiled graphs would bypass: measure eager.
    measurable = device.type == "cuda" or not compile
    forward_memory = {n: peak_memory_bytes(s.forward, device) / 2**20 if measurable else float("nan")
                      for n, s in sides.items()}
    train_memory = {n: peak_memory_bytes(s.train_step, device) / 2**20 if measurable else float("nan")
                    for n, s in sides.items()}

    label = case.label
    rows = [
        Comparison("network", label, "parameters", "M", params["ours"] / 1e6, params["theirs"] / 1e6,
                   notes="target: within 5%"),
        Comparison("network", label, "forward FLOPs per image", "GFLOP", forward_flops["ours"] / 1e9,
                   forward_flops["theirs"] / 1e9, notes="torch.utils.flop_counter"),
    ]
    for metric, times, batch in (("forward", forward_times, case.forward_batch),
                                 ("training step", train_times, case.train_batch)):
        rows.append(Comparison(
            "network", label, f"{metric} throughput, batch {batch}", "images/s",
            throughput(batch, times["ours"]), throughput(batch, times["theirs"]),
            notes="target >= 1.0" if metric == "training step" else "",
            spread={n: spread(batch, t) for n, t in times.items()},
        ))
    for metric, memory, batch in (("forward", forward_memory, case.forward_batch),
                                  ("training step", train_memory, case.train_batch)):
        rows.append(Comparison("network", label, f"{metric} peak memory, batch {batch}", "MiB",
                               memory["ours"], memory["theirs"], lower_is_better=True))
    rows.append(ema_comparison(ours, label, device, repeats, warmup))
    extra: dict[str, Any] = {"train_flops_per_step": None, "mfu": None}
    peak = peak_bf16_flops(device)
    if peak is not None:
        # Training FLOPs (forward + backward) counted on the eager model, over the median step time.
        counted = flops(make_side(ours, our_call, fwd_in, train_in, device, compile=False).train_step)
        extra["train_flops_per_step"] = counted
        extra["mfu"] = counted / statistics.median(train_times["ours"]) / peak
    return rows, extra
