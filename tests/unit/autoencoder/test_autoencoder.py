"""The autoencoder of latent diffusion: codec, scaling, adversarial loss, caching, loading, resume."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from mjexp.autoencoder import kl_train
from mjexp.autoencoder.adversarial import (
    PatchDiscriminator,
    adaptive_weight,
    adversarial_active,
    hinge_discriminator_loss,
)
from mjexp.autoencoder.autoencoder_module import AutoencoderModule, psnr
from mjexp.autoencoder.autoencoder_settings import AutoencoderSettings
from mjexp.autoencoder.codec import LatentCodec, build_autoencoder_kl
from mjexp.autoencoder.latent_cache import StaleLatentCache, cached_posteriors
from mjexp.autoencoder.pretrained import load_autoencoder_kl
from mjexp.data.datamodule import recipe_loader
from mjexp.data.dataset_settings import ShapesSettings
from mjexp.data.shapes import ShapesDataModule

TINY = dict(name="kl", block_out_channels=(8, 8), norm_num_groups=4, latent_channels=4, batch_size=8, steps=2)


def tiny_settings(tmp_path: Path, **changes) -> AutoencoderSettings:
    return AutoencoderSettings(**{**TINY, "cache_dir": str(tmp_path / "ae"), **changes})


@pytest.fixture(scope="module")
def shapes() -> ShapesDataModule:
    return ShapesDataModule(ShapesSettings(train_size=16, val_size=8, test_size=4, judge_size=4, batch_size=8))


def tiny_codec(seed: int = 0, scaling: float = 0.5, shift: float = 0.1) -> LatentCodec:
    torch.manual_seed(seed)
    return LatentCodec(build_autoencoder_kl(AutoencoderSettings(**TINY), 16), scaling, shift)


def test_codec_shapes_and_scaling() -> None:
    codec = tiny_codec()
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    latents = codec.encode(images)
    assert codec.factor == 2 and latents.shape == (3, 4, 8, 8)
    posterior = codec.posterior(images)
    torch.testing.assert_close(latents, (posterior.mean - 0.1) * 0.5)
    decoded = codec.decode(latents)
    assert decoded.shape == images.shape
    torch.testing.assert_close(decoded, codec.vae.decode(posterior.mean).sample)
    with pytest.raises(ValueError, match="not divisible by the autoencoder's downsampling factor 2"):
        codec.encode(torch.zeros(1, 3, 15, 16))


def test_bf16_autocast_runs_on_cpu() -> None:
    codec = tiny_codec()
    codec.bf16 = True
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    latents = codec.encode(images)
    assert latents.dtype == torch.float32 and codec.decode(latents).dtype == torch.float32
    codec.bf16 = False
    assert (latents - codec.encode(images)).abs().max() < 0.1  # bf16 keeps ~3 significant digits


def test_scaling_factor_gives_unit_variance(shapes: ShapesDataModule) -> None:
    codec = tiny_codec()
    loader = recipe_loader(shapes.dataset("train"), 8, 0, train=False)
    scale = kl_train.estimate_scaling_factor(codec.vae, loader, seed=0)
    generator = torch.Generator().manual_seed(0)
    samples = torch.cat([codec.posterior(b["image"]).sample(generator).flatten() for b in loader])
    assert abs(float((samples * scale).std()) - 1.0) < 0.05


def test_psnr_of_a_known_error() -> None:
    images = torch.zeros(2, 3, 4, 4)
    # MSE 0.01 on a peak-to-peak range of 2: 10 log10(4 / 0.01) = 26.02 dB
    assert float(psnr(images, images + 0.1)) == pytest.approx(26.0206, abs=1e-3)


def test_hinge_loss_and_its_step() -> None:
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    # real: relu(1 - 2) = 0, relu(1 - 0.5) = 0.5 -> 0.25; fake: relu(1 - 2) = 0, relu(1 + 0) = 1 -> 0.5
    assert float(hinge_discriminator_loss(real, fake)) == pytest.approx(0.5 * (0.25 + 0.5))
    assert [adversarial_active(s, 3) for s in (0, 2, 3, 4)] == [False, False, True, True]
    assert not adversarial_active(10**6, None)


def test_adaptive_weight_is_the_ratio_of_gradient_norms() -> None:
    layer = nn.Linear(3, 2)
    x = torch.randn(5, 3)
    out = layer(x)
    nll, g = out.pow(2).sum(), -out.mean()
    expected = torch.linalg.vector_norm(torch.autograd.grad(nll, layer.weight, retain_graph=True)[0]) / (
        torch.linalg.vector_norm(torch.autograd.grad(g, layer.weight, retain_graph=True)[0]) + 1e-4
    )
    assert float(adaptive_weight(nll, g, layer.weight, 0.5)) == pytest.approx(0.5 * float(expected), rel=1e-5)


def test_patch_discriminator_scores_patches() -> None:
    logits = PatchDiscriminator(3, 8, layers=2)(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 1, 6, 6)  # 32 -> 16 -> 8 (stride 2), 7, 6 (stride 1, kernel 4)


def test_adversarial_loss_switches_on_at_its_step(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = AutoencoderModule(tiny_settings(tmp_path, disc_start=3), 16)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    module.updates.fill_(2)
    _, before = module.losses(images)
    module.updates.fill_(3)
    loss, after = module.losses(images)
    assert "g_loss" not in before and {"g_loss", "d_weight"} <= set(after)
    plain = after["nll"] + module.settings.kl_weight * after["kl"]
    assert float(loss.detach()) == pytest.approx(float(plain + after["d_weight"] * after["g_loss"]), rel=1e-5)


def test_discriminator_trains_only_from_its_step(tmp_path: Path, shapes: ShapesDataModule) -> None:
    settings = tiny_settings(tmp_path, disc_start=2, steps=3)
    seen = []

    class Watch(L.Callback):
        def on_train_batch_end(self, trainer, module, *args):
            seen.append(torch.cat([p.detach().flatten() for p in module.discriminator.parameters()]).clone())

    torch.manual_seed(0)
    module = AutoencoderModule(settings, 16)
    start = torch.cat([p.detach().flatten() for p in module.discriminator.parameters()]).clone()
    trainer = L.Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[Watch()], default_root_dir=str(tmp_path))
    trainer.fit(module, recipe_loader(shapes.dataset("train"), 8, 0, train=True))
    assert int(module.updates) == 3 and len(seen) == 3
    assert torch.equal(seen[0], start) and torch.equal(seen[1], start)  # updates 0 and 1
    assert not torch.equal(seen[2], start)  # update 2 >= disc_start


def test_trained_autoencoder_is_cached_and_loads_back_identically(tmp_path: Path, shapes: ShapesDataModule, monkeypatch) -> None:
    settings = tiny_settings(tmp_path)
    folder = kl_train.train_autoencoder(shapes, settings, resolution=16)
    metrics = kl_train.read_metrics(folder)
    assert metrics["scaling_factor"] > 0 and metrics["val_psnr"] > 0
    assert not list(Path(settings.cache_dir).glob("*.partial"))
    # the same inputs reuse the folder without training
    monkeypatch.setattr(kl_train, "_fit", lambda *a, **k: pytest.fail("retrained a cached autoencoder"))
    assert kl_train.train_autoencoder(shapes, settings, resolution=16) == folder
    assert load_autoencoder_kl(str(folder)).config.scaling_factor == pytest.approx(metrics["scaling_factor"])


def test_saved_autoencoder_loads_back_with_identical_latents(tmp_path: Path) -> None:
    codec = tiny_codec()
    codec.vae.register_to_config(scaling_factor=0.5, shift_factor=0.1)
    codec.vae.save_pretrained(tmp_path / "vae")
    loaded = load_autoencoder_kl(str(tmp_path / "vae"))
    again = LatentCodec(loaded, loaded.config.scaling_factor, loaded.config.shift_factor)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(codec.encode(images), again.encode(images))
    assert torch.equal(codec.decode(codec.encode(images)), again.decode(again.encode(images)))


def test_pretrained_errors_name_what_is_missing(tmp_path: Path) -> None:
    pipeline = tmp_path / "pipe"
    build_autoencoder_kl(AutoencoderSettings(**TINY), 16).save_pretrained(pipeline / "vae")
    (pipeline / "model_index.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="has no config.json.*subfolder=vae"):
        load_autoencoder_kl(str(pipeline))
    assert load_autoencoder_kl(str(pipeline), subfolder="vae").config.latent_channels == 4
    (pipeline / "vae" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="pipe/vae has no config.json"):
        load_autoencoder_kl(str(pipeline), subfolder="vae")
    with pytest.raises(FileNotFoundError, match="not a local folder and downloads are off"):
        load_autoencoder_kl("someone/some-model", subfolder="vae")


def test_latent_cache_reuses_and_never_serves_another_autoencoder(tmp_path: Path, shapes: ShapesDataModule, monkeypatch) -> None:
    codec = tiny_codec()
    dataset, fingerprint = shapes.dataset("val"), shapes.fingerprint("val")
    first = cached_posteriors(codec, dataset, fingerprint, tmp_path)
    assert first.mean.shape == (8, 4, 8, 8)
    files = list(tmp_path.glob("latents-*.safetensors"))
    with monkeypatch.context() as patch:
        patch.setattr(LatentCodec, "posterior", lambda *a: pytest.fail("re-encoded a cached split"))
        again = cached_posteriors(codec, dataset, fingerprint, tmp_path)
    assert torch.equal(first.mean, again.mean) and torch.equal(first.logvar, again.logvar)
    changed = tiny_codec()
    with torch.no_grad():
        changed.vae.decoder.conv_out.bias.add_(1e-3)  # a decoder-only change alters no latent, but is another autoencoder
    cached_posteriors(changed, dataset, fingerprint, tmp_path)
    new_files = set(tmp_path.glob("latents-*.safetensors")) - set(files)
    assert len(new_files) == 1
    # a file copied under another autoencoder's name is refused, not read
    new_files.pop().write_bytes(files[0].read_bytes())
    with pytest.raises(StaleLatentCache, match="written for another autoencoder"):
        cached_posteriors(changed, dataset, fingerprint, tmp_path)


def test_autoencoder_training_resumes_after_a_kill(tmp_path: Path, shapes: ShapesDataModule, monkeypatch) -> None:
    settings = tiny_settings(tmp_path, steps=4, checkpoint_every_n_steps=2)

    class Kill(L.Callback):
        def on_train_batch_end(self, trainer, module, *args):
            if int(module.updates) == 3:
                raise RuntimeError("killed")  # after the checkpoint at update 2

    real_trainer = L.Trainer
    monkeypatch.setattr(kl_train.L, "Trainer", lambda **kw: real_trainer(**{**kw, "callbacks": [*kw["callbacks"], Kill()]}))
    with pytest.raises(RuntimeError, match="killed"):
        kl_train.train_autoencoder(shapes, settings, resolution=16)
    partial = next(Path(settings.cache_dir).glob("*.partial"))
    assert (partial / "last.ckpt").is_file()
    monkeypatch.setattr(kl_train.L, "Trainer", real_trainer)
    resumed_from = []
    real_fit = real_trainer.fit
    monkeypatch.setattr(real_trainer, "fit", lambda self, module, **kw: (resumed_from.append(kw.get("ckpt_path")), real_fit(self, module, **kw))[1])
    folder = kl_train.train_autoencoder(shapes, settings, resolution=16)
    assert resumed_from == [str(partial / "last.ckpt")]
    assert (folder / "autoencoder.json").is_file() and not partial.exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(name="vq"), "autoencoder.name='vq' is not one of none, kl, pretrained"),
        (dict(block_out_channels=(12, 16), norm_num_groups=8), "divisible by autoencoder.norm_num_groups=8"),
        (dict(name="pretrained"), "autoencoder=pretrained needs autoencoder.path"),
        (dict(disc_start=-1), "autoencoder.disc_start=-1 must be >= 0"),
        (dict(latent_channels=0), "autoencoder.latent_channels=0 must be >= 1"),
    ],
)
def test_settings_refuse_bad_values(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        AutoencoderSettings(**changes)
