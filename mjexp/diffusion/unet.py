"""A text-conditional U-Net in the ADM / Stable Diffusion family.

Residual blocks carry the timestep (plus pooled text) embedding; transformer blocks at the chosen
levels do self-attention over pixels and cross-attention to the text tokens, both through
PyTorch's ``scaled_dot_product_attention``. The network is fully convolutional, so the same
weights run at the hires-fix resolution. Optional ``image_channels`` are concatenated to the
input for super-resolution models (the low-res image upsampled to the target size); such a model
also takes the noise-augmentation level of that image (``noise_level``, embedded like the timestep
and added to the timestep embedding, as Imagen's super-resolution models do; Saharia et al. 2022,
Sec. 2.5).

Call convention (docs/architecture.md, "Contracts"): ``unet(x_vp, t, text=TextEmbedding, image=None, noise_level=None)
-> prediction``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mjexp.text.base import TextEmbedding


@dataclass
class UNetSpec:
    """Architecture hyper-parameters (the ``unet`` config group mirrors these fields)."""

    in_channels: int = 3
    out_channels: int = 3
    image_channels: int = 0  # extra input channels concatenated for super-resolution models
    # Embed the conditioning image's augmentation level (a (B,) tensor in [0, 1]) into the
    # timestep embedding; off for plain models (their parameters and outputs are unchanged).
    noise_level_conditioning: bool = False
    channels: int = 32
    channel_mult: list[int] = field(default_factory=lambda: [1, 2])
    num_res_blocks: int = 1
    attention_levels: list[int] = field(default_factory=lambda: [1])
    head_dim: int = 32
    transformer_depth: int = 1
    context_dim: int = 128  # width of the text tokens
    pooled_dim: int = 128  # width of the pooled text embedding (0 disables it)
    dropout: float = 0.0
    groups: int = 8
    # Keep conv weights and activations channels-last (NHWC): the same math, laid out so oneDNN
    # (CPU) and tensor-core (GPU) convolutions need no layout conversions, and the transformer
    # blocks' pixel tokens are views instead of copies (see benchmarks/ and BENCHMARKS.md).
    channels_last: bool = False

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (fractional) timesteps (Vaswani et al. 2017; ADM's convention)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


def zero_module(module: nn.Module) -> nn.Module:
    """Zero-initialise the last layer of a residual branch so each block starts as identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the embedding added as scale and shift (ADM's AdaGN)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_module(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head attention through SDPA; keys/values come from ``context`` when given."""

    def __init__(self, dim: int, context_dim: int, head_dim: int) -> None:
        super().__init__()
        self.heads = max(1, dim // head_dim)
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(context_dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, n, d = x.shape
        context = x if context is None else context
        q = self.q(x).view(b, n, self.heads, -1).transpose(1, 2)
        k, v = self.kv(context).view(b, context.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn_mask = None if mask is None else mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out(out.transpose(1, 2).reshape(b, n, d))


class TransformerBlock(nn.Module):
    """Pre-LN self-attention, cross-attention to text, and a GEGLU feed-forward (SD's block)."""

    def __init__(self, dim: int, context_dim: int, head_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.self_attn = nn.LayerNorm(dim), Attention(dim, dim, head_dim)
        self.norm2, self.cross_attn = nn.LayerNorm(dim), Attention(dim, context_dim, head_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff_in = nn.Linear(dim, 8 * dim)  # GEGLU: 2 x (4 * dim)
        self.ff_out = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x))
        x = x + self.cross_attn(self.norm2(x), context, mask)
        hidden, gate = self.ff_in(self.norm3(x)).chunk(2, dim=-1)
        return x + self.ff_out(hidden * F.gelu(gate))


class SpatialTransformer(nn.Module):
    """Runs transformer blocks over the pixels of a feature map, as a residual branch."""

    def __init__(self, channels: int, spec: UNetSpec) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(spec.groups, channels)
        self.proj_in = nn.Linear(channels, channels)
        self.blocks = nn.ModuleList(
            TransformerBlock(channels, spec.context_dim, spec.head_dim, spec.dropout)
            for _ in range(spec.transformer_depth)
        )
        self.proj_out = zero_module(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))
        for block in self.blocks:
            tokens = block(tokens, context, mask)
        return x + self.proj_out(tokens).transpose(1, 2).reshape(b, c, h, w)


class Level(nn.Module):
    """The blocks of one resolution level: residual blocks, each optionally followed by attention."""

    def __init__(self, in_chs: list[int], out_ch: int, emb_dim: int, attention: bool, spec: UNetSpec) -> None:
        super().__init__()
        self.res = nn.ModuleList(ResBlock(c, out_ch, emb_dim, spec.groups, spec.dropout) for c in in_chs)
        self.attn = nn.ModuleList(
            SpatialTransformer(out_ch, spec) if attention else nn.Identity() for _ in in_chs
        )


class UNet(nn.Module):
    """Text-conditional U-Net; see the module docstring for the call convention."""

    def __init__(self, spec: UNetSpec, parameterization: str = "eps") -> None:
        super().__init__()
        self.spec = spec
        self.parameterization = parameterization
        ch, mult = spec.channels, spec.channel_mult
        emb_dim = 4 * ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.pooled_proj = nn.Linear(spec.pooled_dim, emb_dim) if spec.pooled_dim > 0 else None
        # Zero-initialised output: a new super-resolution model starts out ignoring the level.
        self.noise_level_mlp = (
            nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), zero_module(nn.Linear(emb_dim, emb_dim)))
            if spec.noise_level_conditioning
            else None
        )
        self.null_context = nn.Parameter(torch.zeros(1, 1, spec.context_dim))
        self.conv_in = nn.Conv2d(spec.in_channels + spec.image_channels, ch, 3, padding=1)

        widths = [ch * m for m in mult]
        skip_chs = [ch]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        in_ch = ch
        for i, width in enumerate(widths):
            ins = [in_ch] + [width] * (spec.num_res_blocks - 1)
            self.down.append(Level(ins, width, emb_dim, i in spec.attention_levels, spec))
            skip_chs += [width] * spec.num_res_blocks
            in_ch = width
            if i < len(widths) - 1:
                self.downsample.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
                skip_chs.append(width)

        self.mid_res1 = ResBlock(in_ch, in_ch, emb_dim, spec.groups, spec.dropout)
        self.mid_attn = SpatialTransformer(in_ch, spec)
        self.mid_res2 = ResBlock(in_ch, in_ch, emb_dim, spec.groups, spec.dropout)

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, width in reversed(list(enumerate(widths))):
            ins = []
            for _ in range(spec.num_res_blocks + 1):
                ins.append(in_ch + skip_chs.pop())
                in_ch = width
            self.up.append(Level(ins, width, emb_dim, i in spec.attention_levels, spec))
            if i > 0:
                self.upsample.append(nn.Conv2d(width, width, 3, padding=1))

        self.norm_out = nn.GroupNorm(spec.groups, in_ch)
        self.conv_out = zero_module(nn.Conv2d(in_ch, spec.out_channels, 3, padding=1))
        if spec.channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: TextEmbedding,
        image: torch.Tensor | None = None,
        noise_level: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if (image is None) != (self.spec.image_channels == 0):
            raise ValueError(
                f"this U-Net expects image_channels={self.spec.image_channels} conditioning channels; "
                f"got image={'None' if image is None else tuple(image.shape)}"
            )
        if (noise_level is None) == self.spec.noise_level_conditioning:
            raise ValueError(
                f"this U-Net has noise_level_conditioning={self.spec.noise_level_conditioning}; "
                f"got noise_level={'None' if noise_level is None else tuple(noise_level.shape)}"
            )
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        emb = self.time_mlp(timestep_embedding(t, self.spec.channels).to(x.dtype))
        if self.noise_level_mlp is not None:
            # Levels in [0, 1] are spread over the timestep range so the sinusoids resolve them alike.
            level = noise_level.expand(x.shape[0]) if noise_level.ndim == 0 else noise_level
            emb = emb + self.noise_level_mlp(timestep_embedding(1000 * level, self.spec.channels).to(x.dtype))
        if self.pooled_proj is not None:
            emb = emb + self.pooled_proj(text.pooled.to(emb.dtype))
        # A learned always-visible null token keeps attention defined when every text token is
        # masked (e.g. an encoder whose empty prompt has no tokens).
        context = torch.cat([self.null_context.expand(len(text), -1, -1).to(text.tokens.dtype), text.tokens], 1)
        mask = F.pad(text.mask.bool(), (1, 0), value=True)

        h = x if image is None else torch.cat([x, image], dim=1)
        if self.spec.channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        h = self.conv_in(h)
        skips = [h]
        for i, level in enumerate(self.down):
            for res, attn in zip(level.res, level.attn):
                h = res(h, emb)
                h = h if isinstance(attn, nn.Identity) else attn(h, context, mask)
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                skips.append(h)

        h = self.mid_res2(self.mid_attn(self.mid_res1(h, emb), context, mask), emb)

        for i, level in enumerate(self.up):
            for res, attn in zip(level.res, level.attn):
                h = res(torch.cat([h, skips.pop()], dim=1), emb)
                h = h if isinstance(attn, nn.Identity) else attn(h, context, mask)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))

        return self.conv_out(F.silu(self.norm_out(h)))
