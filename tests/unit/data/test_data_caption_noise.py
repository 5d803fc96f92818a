"""Caption noise: train captions misname one appearance attribute at the configured rate; images,
true attributes and the other splits stay as they were."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mjexp.data.dataset_settings import ShapesSettings
from mjexp.data.shapes import (
    NOISY_ATTRIBUTES,
    ShapesDataModule,
    ShapesDataset,
    ShapesSpec,
    caption_attributes,
)

N = 4000


def _stated(dataset: ShapesDataset, indices: list[int]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(true attributes, attributes the captions state) of ``indices``, checked against the texts."""
    _, true = dataset.render(indices)
    index = np.asarray(indices)
    stated = caption_attributes(dataset.spec, true, dataset.caption_noise, dataset.seed, dataset.split, index, dataset.exclude)
    for sample, i in zip(dataset.__getitems__(indices), range(len(indices))):
        assert sample["text"] == dataset.schema.caption({k: v[i] for k, v in stated.items()})
        assert sample["attrs"] == {k: v[i] for k, v in true.items()}
    return true, stated


@pytest.mark.parametrize("two_objects", [False, True])
def test_rate_and_form_of_the_noise(two_objects: bool) -> None:
    rate = 0.3
    dataset = ShapesDataset("train", N, spec=ShapesSpec(two_objects=two_objects), caption_noise=rate)
    true, stated = _stated(dataset, list(range(N)))
    differing = np.array([[t != s for t, s in zip(true[k], stated[k])] for k in true])  # (attributes, N)
    # A corrupted caption misnames exactly one attribute, and only an appearance attribute.
    assert differing.sum(0).max() == 1
    changed = {k for k, row in zip(true, differing) if row.any()}
    assert changed == {k for k in true if k.rstrip("_12") in NOISY_ATTRIBUTES}
    # The corruption rate is binomial(N, rate): within 3 standard errors.
    observed = differing.any(0).mean()
    assert abs(observed - rate) < 3 * math.sqrt(rate * (1 - rate) / N)
    # The replacement value is uniform over the other values: every colour replaces red, say.
    key = "color" if not two_objects else "color_1"
    replacements = {s for t, s in zip(true[key], stated[key]) if t == "red" and s != t}
    assert replacements == set(dataset.spec.colors) - {"red"}


def test_images_do_not_change_and_captions_do_not_depend_on_batching() -> None:
    clean = ShapesDataset("train", 500, seed=2)
    noisy = ShapesDataset("train", 500, seed=2, caption_noise=0.5)
    assert np.array_equal(clean.render(range(500))[0].numpy(), noisy.render(range(500))[0].numpy())
    texts = [s["text"] for s in noisy.__getitems__(list(range(500)))]
    assert [s["text"] for s in noisy.__getitems__([70, 5, 499])] == [texts[70], texts[5], texts[499]]
    assert sum(a != b["text"] for a, b in zip(texts, clean.__getitems__(list(range(500))))) > 150


def test_only_train_captions_are_noisy_and_the_fingerprint_says_so() -> None:
    sizes = {"train_size": 300, "judge_size": 300, "test_size": 300, "val_size": 300}
    module = ShapesDataModule(ShapesSettings(**sizes, caption_noise=0.5))
    clean = ShapesDataModule(ShapesSettings(**sizes))
    for split in ("judge", "val", "test"):
        samples = module.dataset(split).__getitems__(list(range(300)))
        assert all(s["text"] == module.schema.caption(s["attrs"]) for s in samples), split
        assert module.fingerprint(split) == clean.fingerprint(split), split
    assert module.fingerprint("train")["caption_noise"] == 0.5
    assert "caption_noise" not in clean.fingerprint("train")


def test_noise_never_names_a_held_out_combination() -> None:
    holdout = [{"color": "red", "shape": "circle"}, {"color": "blue"}]
    dataset = ShapesDataset("train", N, exclude=holdout, caption_noise=0.9)
    _, stated = _stated(dataset, list(range(N)))
    pairs = set(zip(stated["color"], stated["shape"]))
    assert ("red", "circle") not in pairs and "blue" not in stated["color"]
    assert ("red", "square") in pairs  # the rest of the vocabulary is still used


def test_the_text_encoder_can_train_on_its_own_caption_noise() -> None:
    """``text_encoder.caption_noise``: the domain CLIP trains on the same images with other captions
    (0: clean, like a pretrained encoder), and by default on the diffusion model's own data."""
    from mjexp.runs.components import build_datamodule, domain_clip_data

    data_cfg = {"name": "shapes", "train_size": 300, "val_size": 300, "judge_size": 300, "test_size": 300,
                "caption_noise": 0.5}
    noisy = build_datamodule(data_cfg)
    assert domain_clip_data(data_cfg, {"name": "domain_clip", "caption_noise": None}, noisy) is noisy
    assert domain_clip_data(data_cfg, {"name": "domain_clip", "caption_noise": 0.5}, noisy) is noisy
    clean = domain_clip_data(data_cfg, {"name": "domain_clip", "caption_noise": 0.0}, noisy)
    reference = build_datamodule({**data_cfg, "caption_noise": 0.0})
    assert clean.fingerprint("train") == reference.fingerprint("train") != noisy.fingerprint("train")
    indices = list(range(300))
    clean_rows, noisy_rows = clean.dataset("train").__getitems__(indices), noisy.dataset("train").__getitems__(indices)
    assert all((a["image"] == b["image"]).all() for a, b in zip(clean_rows, noisy_rows))
    assert 100 < sum(a["text"] != b["text"] for a, b in zip(clean_rows, noisy_rows)) < 200  # about half
    with pytest.raises(ValueError, match="needs data with caption noise"):
        domain_clip_data({"name": "digits"}, {"name": "domain_clip", "caption_noise": 0.3}, noisy)
