"""DiffusionModule: the LightningModule that trains the text-conditional denoiser.

Thin glue: the math lives in ``schedules``, ``parameterization`` and ``losses``. What it adds is
condition dropout (so one model serves classifier-free guidance), EMA weights kept in a separate
module, AdamW with warmup, a validation loss on fixed noise, and checkpoints that leave frozen
text encoders out (they are rebuilt from their source). With ``super_resolution`` it trains a
super-resolution model: the U-Net also sees each image degraded to the low resolution and
noise-augmented (:mod:`mjexp.diffusion.superres`), plus the augmentation level.

Checkpoints resume exactly: besides what Lightning restores (weights, EMA weights and counters,
optimizer, LR schedule, loop counters, the train loader's position), they carry the global RNG
states, restored when training restarts. They never hold non-finite weights, and one without
the EMA state, or made for another U-Net configuration, is refused with the keys named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

import lightning as L
import torch
import torch.nn.functional as F

from mjexp.diffusion import random_state
from mjexp.diffusion.ema import EMA
from mjexp.diffusion.losses import LossWeighting, loss_weights
from mjexp.diffusion.parameterization import (
    Parameterization,
    check_parameterization,
    target_from,
)
from mjexp.diffusion.schedules import NoiseSchedule
from mjexp.diffusion.superres import SuperResolution, degrade, noise_augment
from mjexp.diffusion.unet import UNet
from mjexp.files.checkpoints import CheckpointError, state_mismatch
from mjexp.text.base import TextEmbedding, TextEncoder

LrSchedule = Literal["constant", "cosine"]
NonfiniteLoss = Literal["error", "skip"]
Weights = Literal["ema", "raw"]  # the EMA average or the raw trained weights


@dataclass(frozen=True)
class DiffusionSettings:
    """What a diffusion training optimises besides the networks and the schedule (the config's
    ``diffusion`` group is derived from these fields).

    ``v``, not ``eps``: at the top of a non-zero-terminal schedule (sigma ~ 157 for ``linear``) an
    eps model's ``x0 = x - sigma * eps`` amplifies its error ~157x; a short CPU training of the
    default experiment then gave ~40% saturated-noise images with deterministic samplers (0% with v).
    ``cond_dropout``: the probability a caption is replaced by the empty prompt, so one model
    serves classifier-free guidance. ``ema_max_decay``/``ema_power``: the EMA warm-up
    (:class:`mjexp.diffusion.ema.EMA`). ``nonfinite_loss``: stop (``error``) or skip such a step.
    """

    parameterization: Parameterization = "v"
    loss_weighting: LossWeighting = "uniform"
    min_snr_gamma: float = 5.0
    cond_dropout: float = 0.1
    ema_max_decay: float = 0.9999
    ema_power: float = 0.6667
    nonfinite_loss: NonfiniteLoss = "error"

    def __post_init__(self) -> None:
        choices = {"parameterization": get_args(Parameterization), "loss_weighting": get_args(LossWeighting),
                   "nonfinite_loss": get_args(NonfiniteLoss)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"diffusion.{name}={getattr(self, name)!r} is not one of {', '.join(allowed)}")
        if not 0.0 <= self.cond_dropout <= 1.0:
            raise ValueError(f"diffusion.cond_dropout must be in [0, 1], got {self.cond_dropout}")
        if not 0.0 <= self.ema_max_decay <= 1.0:
            raise ValueError(f"diffusion.ema_max_decay must be in [0, 1], got {self.ema_max_decay}")
        if not self.min_snr_gamma > 0:
            raise ValueError(f"diffusion.min_snr_gamma must be > 0, got {self.min_snr_gamma}")


@dataclass
class OptimSettings:
    """AdamW with linear warmup, then constant or cosine decay to ``min_lr_ratio * lr``."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    schedule: LrSchedule = "constant"
    min_lr_ratio: float = 0.1
    total_steps: int = 1000  # set from trainer.max_steps

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        if self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.schedule not in get_args(LrSchedule):
            raise ValueError(f"optim.schedule={self.schedule!r} is not one of {', '.join(get_args(LrSchedule))}")


def lr_multiplier(step: int, settings: OptimSettings) -> float:
    """Learning-rate factor at optimizer step ``step``."""
    if step < settings.warmup_steps:
        return (step + 1) / settings.warmup_steps
    if settings.schedule == "constant":
        return 1.0
    span = max(1, settings.total_steps - settings.warmup_steps)
    progress = min(1.0, (step - settings.warmup_steps) / span)
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return settings.min_lr_ratio + (1 - settings.min_lr_ratio) * cosine


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss is NaN or infinite (and skipping is not configured)."""


class DiffusionModule(L.LightningModule):
    """Trains ``unet`` to denoise images conditioned on ``text_encoder`` embeddings."""

    def __init__(
        self,
        unet: UNet,
        text_encoder: TextEncoder,
        schedule: NoiseSchedule,
        settings: DiffusionSettings | None = None,
        optim: OptimSettings | None = None,
        val_seed: int = 1234,
        run_config: dict[str, Any] | None = None,
        super_resolution: SuperResolution | None = None,
    ) -> None:
        super().__init__()
        settings = settings or DiffusionSettings()
        check_parameterization(settings.parameterization, schedule.zero_terminal_snr)
        is_sr_unet = unet.spec.image_channels == unet.spec.in_channels and unet.spec.noise_level_conditioning
        if (super_resolution is not None) != is_sr_unet:
            raise ValueError(
                f"super_resolution={super_resolution} needs a U-Net with image_channels={unet.spec.in_channels} "
                "and noise_level_conditioning=true (and a plain model one with neither); got "
                f"image_channels={unet.spec.image_channels}, noise_level_conditioning={unet.spec.noise_level_conditioning}"
            )
        self.unet = unet
        self.text_encoder = text_encoder
        self.schedule = schedule
        self.parameterization = settings.parameterization
        self.loss_weighting = settings.loss_weighting
        self.min_snr_gamma = settings.min_snr_gamma
        self.cond_dropout = settings.cond_dropout
        self.optim_settings = optim or OptimSettings()
        self.val_seed = val_seed
        self.nonfinite_loss = settings.nonfinite_loss
        self.super_resolution = super_resolution
        # The resolved config, stored in every checkpoint so a .ckpt alone can rebuild the model.
        self.run_config = run_config or {}
        self.ema_unet = EMA(unet, settings.ema_max_decay, settings.ema_power)
        self.ema_text_encoder = (
            EMA(text_encoder, settings.ema_max_decay, settings.ema_power) if text_encoder.trainable else None
        )
        self.register_buffer("alphas_cumprod", schedule.alphas_cumprod.float(), persistent=False)
        self.skipped_steps = 0
        self._step_skipped = False
        self._rng_to_restore: dict[str, Any] | None = None

    # ---- the objective -----------------------------------------------------------------------
    def conditioning(self, encoder: TextEncoder, prompts: list[str], dropout: float = 0.0) -> TextEmbedding:
        """Encode prompts, replacing each by the null (empty-prompt) embedding with prob ``dropout``."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and encoder.trainable):
            text = encoder.encode(prompts)
            if dropout > 0:
                keep = torch.rand(len(prompts), device=text.tokens.device) >= dropout
                text = text.where(keep, encoder.null_embedding(len(prompts)))
        return text

    def diffusion_loss(
        self,
        unet: UNet,
        encoder: TextEncoder,
        batch: dict[str, Any],
        generator: torch.Generator | None = None,
        dropout: float = 0.0,
    ) -> torch.Tensor:
        """Weighted regression loss on one batch; ``generator`` fixes t and noise (validation)."""
        x0 = batch["image"]
        b = x0.shape[0]
        gen_device = generator.device if generator is not None else x0.device
        t = torch.randint(0, self.schedule.num_train_timesteps, (b,), generator=generator, device=gen_device)
        noise = torch.randn(x0.shape, generator=generator, device=gen_device, dtype=x0.dtype)
        t, noise = t.to(x0.device), noise.to(x0.device)
        alpha_bar = self.alphas_cumprod[t].view(b, 1, 1, 1)
        alpha, sigma_vp = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        x_t = alpha * x0 + sigma_vp * noise

        cond: dict[str, Any] = {"text": self.conditioning(encoder, batch["text"], dropout)}
        if self.super_resolution is not None:
            cond.update(self.low_resolution_condition(x0, generator))
        prediction = unet(x_t, t.float(), **cond)
        target = target_from(self.parameterization, x0, noise, alpha, sigma_vp)
        mse = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        snr = (alpha_bar / (1 - alpha_bar)).view(b)
        weights = loss_weights(snr, self.parameterization, self.loss_weighting, self.min_snr_gamma)
        return (weights * mse).mean()

    def low_resolution_condition(
        self, x0: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """An SR model's ``image`` and ``noise_level`` inputs for a batch of target-size images:
        degraded, then noise-augmented at levels ``U[0, max_noise_aug]`` (drawn after t and noise)."""
        sr = self.super_resolution
        gen_device = generator.device if generator is not None else x0.device
        level = torch.rand(x0.shape[0], generator=generator, device=gen_device) * sr.max_noise_aug
        noise = torch.randn(x0.shape, generator=generator, device=gen_device, dtype=x0.dtype)
        level, noise = level.to(x0.device), noise.to(x0.device)
        return {"image": noise_augment(degrade(x0, sr.low_resolution), level, noise), "noise_level": level}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        loss = self.diffusion_loss(self.unet, self.text_encoder, batch, dropout=self.cond_dropout)
        self._step_skipped = not torch.isfinite(loss)
        if self._step_skipped:
            message = f"non-finite training loss ({loss.item()}) at global step {self.global_step}"
            if self.nonfinite_loss != "skip":
                raise NonFiniteLossError(message + "; set diffusion.nonfinite_loss=skip to skip such steps")
            self.skipped_steps += 1
            self.print(f"warning: {message}; step skipped")
        # Logged at every step: Lightning would otherwise repeat the previous step's loss at a skipped one.
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/skipped_steps", float(self.skipped_steps))
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return None if self._step_skipped else loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.val_seed + batch_idx)
        encoder = self.ema_text_encoder.averaged if self.ema_text_encoder else self.text_encoder
        loss = self.diffusion_loss(self.ema_unet.averaged, encoder, batch, generator=generator)
        self.log("val/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0], sync_dist=True)
        return loss

    # ---- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self):
        params = list(self.unet.parameters())
        if self.text_encoder.trainable:
            params += [p for p in self.text_encoder.parameters() if p.requires_grad]
        s = self.optim_settings
        optimizer = torch.optim.AdamW(params, lr=s.lr, betas=tuple(s.betas), weight_decay=s.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(step, s))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)  # runs training_step (the closure) first
        if self._step_skipped:  # the weights did not change: the average must not either
            return
        self.ema_unet.update(self.unet)
        if self.ema_text_encoder is not None:
            self.ema_text_encoder.update(self.text_encoder)

    # ---- sampling-time accessors -------------------------------------------------------------
    def sampling_networks(self, weights: Weights = "ema") -> tuple[UNet, TextEncoder]:
        """The (unet, text encoder) pair to sample with."""
        if weights == "raw":
            return self.unet, self.text_encoder
        encoder = self.ema_text_encoder.averaged if self.ema_text_encoder else self.text_encoder
        return self.ema_unet.averaged, encoder

    # ---- checkpoints: frozen encoders are rebuilt from their source, not stored ----------------
    def _frozen_encoder_prefix(self) -> str | None:
        return None if self.text_encoder.trainable else "text_encoder."

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        bad = [k for k, v in checkpoint["state_dict"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise NonFiniteLossError(
                f"refusing to save a checkpoint at step {self.global_step}: non-finite weights in {bad[:3]}; "
                "the previous checkpoint is kept"
            )
        checkpoint["mjexp_config"] = self.run_config
        checkpoint["mjexp_rng"] = random_state.capture()
        checkpoint["mjexp_skipped_steps"] = self.skipped_steps
        prefix = self._frozen_encoder_prefix()
        if prefix:
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(prefix)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        path = self._trainer.ckpt_path if self._trainer is not None else None
        source = f"checkpoint {path}" if path else "the checkpoint"
        prefix = self._frozen_encoder_prefix()
        if prefix:
            for key, value in self.text_encoder.state_dict().items():
                checkpoint["state_dict"].setdefault(prefix + key, value)
        state = checkpoint["state_dict"]
        if not any(k.startswith("ema_unet.") for k in state):
            raise CheckpointError(
                f"{source} has no EMA state (ema_unet.*): resuming would restart the average from the "
                "current weights; resume from a checkpoint written by mjexp training"
            )
        problems = state_mismatch(self.state_dict(), state)
        if problems:
            raise CheckpointError(
                f"{source} does not fit this model ({'; '.join(problems)}); was it trained with a different "
                "unet / text_encoder config?"
            )
        self.skipped_steps = int(checkpoint.get("mjexp_skipped_steps", 0))
        self._rng_to_restore = checkpoint.get("mjexp_rng")

    def on_train_start(self) -> None:
        # Restored when training starts rather than at load time, so nothing Lightning does while
        # setting up can consume draws that the uninterrupted run did not make.
        if self._rng_to_restore is not None:
            random_state.restore(self._rng_to_restore)
            self._rng_to_restore = None
