"""The domain CLIP: its loss, training to high retrieval accuracy, the cache and the local-dir format."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import open_clip
import pytest
import torch
from open_clip.loss import ClipLoss
from PIL import Image

from mjexp.text import clip_module, clip_train
from mjexp.text.clip_module import DomainClipConfig, MultiPositiveClipLoss
from mjexp.text.clip_train import read_metrics, train_domain_clip
from mjexp.text.encoders import build_text_encoder

CONFIG = DomainClipConfig(steps=100, batch_size=128, warmup_steps=10, context_length=12)


def test_multi_positive_loss_is_clip_loss_when_captions_differ():
    g = torch.Generator().manual_seed(0)
    img, txt = (torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1) for _ in range(2))
    ids = torch.arange(6)[:, None].repeat(1, 4)
    scale = torch.tensor(10.0)
    assert torch.allclose(MultiPositiveClipLoss()(img, txt, scale, ids), ClipLoss()(img, txt, scale))


def test_multi_positive_loss_spreads_targets_over_identical_captions():
    g = torch.Generator().manual_seed(1)
    img, txt = (torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1) for _ in range(2))
    ids = torch.tensor([[5, 1], [7, 1], [5, 1], [9, 9]])  # rows 0 and 2 are the same caption
    logits = 3.0 * img @ txt.T
    targets = torch.tensor([[0.5, 0, 0.5, 0], [0, 1, 0, 0], [0.5, 0, 0.5, 0], [0, 0, 0, 1]])
    ce = lambda z: -(targets * z.log_softmax(dim=1)).sum(dim=1).mean()  # noqa: E731
    want = (ce(logits) + ce(logits.T)) / 2
    assert torch.allclose(MultiPositiveClipLoss()(img, txt, torch.tensor(3.0), ids), want, atol=1e-6)


@pytest.fixture(scope="module")
def trained(quadrant_loaders, tmp_path_factory):
    cache = tmp_path_factory.mktemp("clip_cache")
    return cache, train_domain_clip(quadrant_loaders, CONFIG, cache, seed=0)


def test_domain_clip_learns_the_synthetic_captions(trained):
    _, folder = trained
    metrics = read_metrics(folder)
    assert metrics["val_retrieval_top1"] >= 0.9
    assert metrics["key"]["split"] == "train" and metrics["key"]["seed"] == 0


def test_second_call_reuses_the_cached_model(trained, quadrant_loaders, monkeypatch):
    cache, folder = trained
    weights = folder / clip_train.WEIGHTS_FILE
    mtime = weights.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("a cached domain CLIP was retrained")

    monkeypatch.setattr(clip_train, "_fit", no_training)
    assert train_domain_clip(quadrant_loaders, CONFIG, cache, seed=0) == folder
    assert weights.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in cache.iterdir()) == [folder.name]  # no scratch folders left


def test_cache_key_changes_with_seed_split_and_data(trained, quadrant_loaders, monkeypatch):
    cache, folder = trained
    calls = []

    class Retrained(Exception):
        pass

    def record(*args, **kwargs):
        calls.append(args)
        raise Retrained

    monkeypatch.setattr(clip_train, "_fit", record)
    variants = [
        dict(data=quadrant_loaders, seed=1, split="train"),
        dict(data={"judge": quadrant_loaders["val"], "val": quadrant_loaders["val"]}, seed=0, split="judge"),
        dict(data={"train": quadrant_loaders["val"], "val": quadrant_loaders["val"]}, seed=0, split="train"),
    ]
    for v in variants:
        with pytest.raises(Retrained):
            train_domain_clip(v["data"], CONFIG, cache, split=v["split"], seed=v["seed"])
    assert len(calls) == 3


def test_augmented_training_is_its_own_cache_entry_and_still_learns(trained, quadrant_loaders, monkeypatch):
    cache, folder = trained
    jittered, jitter = [], clip_module.photometric_jitter
    monkeypatch.setattr(clip_module, "photometric_jitter", lambda images: jittered.append(len(images)) or jitter(images))
    augmented = train_domain_clip(quadrant_loaders, replace(CONFIG, augment=True), cache, seed=0)
    assert augmented != folder and read_metrics(augmented)["key"]["config"]["augment"] is True
    assert len(jittered) == CONFIG.steps  # every training batch, never the val batches
    assert read_metrics(augmented)["val_retrieval_top1"] >= 0.9


def test_local_dir_round_trip_loads_without_mjexp(trained, quadrant_loaders):
    """open_clip alone loads the folder; its features, transforms and tokenizer match training."""
    _, folder = trained
    config = json.loads((folder / "open_clip_config.json").read_text())
    assert set(config) == {"model_cfg", "preprocess_cfg"}
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    model.eval()
    batch = next(iter(quadrant_loaders["val"]))
    image = batch["image"][0]
    pil = Image.fromarray(((image + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())
    assert torch.allclose(preprocess(pil), image, atol=1e-6)  # transforms give the [-1, 1] pixels back

    encoder = build_text_encoder("domain_clip", path=str(folder))
    with torch.no_grad():
        want = model.encode_text(tokenizer(batch["text"][:4]))
        sims = model.encode_image(batch["image"][:8], normalize=True) @ model.encode_text(
            tokenizer(batch["text"][:8]), normalize=True
        ).T
    assert torch.allclose(encoder.encode(batch["text"][:4]).pooled, want, atol=1e-5)
    assert encoder.max_length == CONFIG.context_length
    hits = [batch["text"][int(sims[i].argmax())] == batch["text"][i] for i in range(8)]
    assert np.mean(hits) >= 0.75


def test_trains_from_a_datamodule_keyed_by_its_fingerprint(tmp_path):
    """The DataModule path: loaders built here (config.batch_size), data identified by fingerprint."""
    from mjexp.data.dataset_settings import ShapesSettings
    from mjexp.data.shapes import ShapesDataModule

    settings = ShapesSettings(resolution=16, train_size=64, judge_size=64, val_size=32, test_size=8, batch_size=8)
    data = ShapesDataModule(settings)
    config = DomainClipConfig(steps=2, batch_size=32, warmup_steps=1, width=16, embed_dim=16, context_length=12)
    folder = train_domain_clip(data, config, tmp_path, split="judge", seed=3)
    key = read_metrics(folder)["key"]
    assert key["data"] == {"judge": data.fingerprint("judge"), "val": data.fingerprint("val")}
    assert key["model_cfg"]["vision_cfg"]["patch_size"] == 4 and folder.name.startswith("judge-seed3-")
    model = open_clip.create_model(f"local-dir:{folder}")
    assert model.visual.image_size == (16, 16)


def test_image_size_resizes_what_the_image_tower_reads(tmp_path):
    """``image_size``: the tower is built for it and larger data is resized (antialiased bicubic)."""
    from mjexp.data.dataset_settings import ShapesSettings
    from mjexp.data.shapes import ShapesDataModule

    data = ShapesDataModule(ShapesSettings(resolution=32, train_size=32, judge_size=8, val_size=8, test_size=8))
    config = DomainClipConfig(steps=2, batch_size=16, warmup_steps=1, width=16, embed_dim=16, context_length=12, image_size=16)
    folder = train_domain_clip(data, config, tmp_path)
    assert open_clip.create_model(f"local-dir:{folder}").visual.image_size == (16, 16)
    module = clip_module.TextEncoderModule(config.model_cfg(32), config)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    expected = torch.nn.functional.interpolate(images, size=(16, 16), mode="bicubic", antialias=True).clamp(-1, 1)
    assert torch.equal(module.fit(images), expected) and module.fit(expected) is expected
    with pytest.raises(ValueError, match="domain CLIP image_size=0 must be >= 1"):
        DomainClipConfig(image_size=0)
