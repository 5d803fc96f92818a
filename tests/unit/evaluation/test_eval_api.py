"""End to end on CPU with a tiny random judge: preflight, reference caching, metric names and
definitions, judge validity marking, and the report files."""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub
import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from evaluation import ScoringConfig, PreflightError, ReferenceSet, Scorer, make_record, write_report
from evaluation.metrics import metric as metric_module
from evaluation.attributes import AttributeAccuracy
from evaluation.diversity import prompt_diversity
from evaluation.quantisation import to_uint8
from evaluation.patch_fid import patch_fid, patch_moments
from evaluation.roughness import roughness

TINY_NAME = "evaltiny"


@pytest.fixture(scope="module")
def tiny_clip_file(tmp_path_factory: pytest.TempPathFactory, tiny_clip_config: dict) -> Path:
    """A public-style open_clip model: a registered config + a local safetensors weight file."""
    folder = tmp_path_factory.mktemp("openclip")
    (folder / f"{TINY_NAME}.json").write_text(json.dumps(tiny_clip_config))
    open_clip.add_model_config(folder / f"{TINY_NAME}.json")
    torch.manual_seed(1)
    weights = folder / "tiny-weights.safetensors"
    save_file({k: v.contiguous() for k, v in open_clip.CLIP(**tiny_clip_config).state_dict().items()}, str(weights))
    return weights


def reference_set(make_squares, n: int, calls: list[int]) -> ReferenceSet:
    images, attrs = make_squares(n, seed=10)

    def batches():
        calls.append(1)
        for start in range(0, n, 32):
            rows = attrs[start : start + 32]
            yield {"image": images[start : start + 32], "attrs": {k: [r[k] for r in rows] for k in rows[0]}}

    return ReferenceSet({"name": "squares", "version": "1", "noise": 0.05}, "test", 16, n, batches)


def test_preflight_lists_every_missing_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *args, **kwargs: None)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "judge").mkdir()
    config = ScoringConfig(
        extractors=("inception", "judge"), judge_dir=str(tmp_path / "judge"), clip_models=(("ViT-B-32", "laion2b_s34b_b79k"),)
    )
    with pytest.raises(PreflightError) as error:
        Scorer(config)
    message = str(error.value)
    assert "fid/inception" in message and "weights-inception-2015-12-05-6726825d.pth" in message
    assert "open_clip_model.safetensors" in message  # the judge folder is empty
    assert "clip_score/ViT-B-32/laion2b_s34b_b79k" in message and "not cached" in message


def test_patch_fid_of_generated_images_against_the_cached_reference_windows(
    judge_dir: Path, make_squares, tmp_path: Path
) -> None:
    scorer = Scorer(ScoringConfig(judge_dir=str(judge_dir), bootstrap=20, cache_dir=str(tmp_path / "cache")))
    calls: list[int] = []
    patches = scorer.patch_reference(reference_set(make_squares, 48, calls))
    again = scorer.patch_reference(reference_set(make_squares, 48, calls))
    assert len(calls) == 1 and torch.equal(patches.outer, again.outer)  # the second read the cache
    real = to_uint8(make_squares(48, seed=10)[0], "real")[0]
    images, attrs = make_squares(40, seed=20)
    prompts = [str(a) for a in attrs]
    result = scorer.score(images, prompts, patches=patches)
    expected = patch_fid(patch_moments(to_uint8(images, "generated")[0]), patch_moments(real), bootstrap=20)
    assert result.metrics["patch_fid"] == pytest.approx(expected.value, rel=1e-12)
    assert result.metrics["patch_fid/ci_high"] == pytest.approx(expected.interval.high, rel=1e-12)
    assert result.params["patch_fid"]["n_reference"] == 48 and result.params["patch_fid"]["compared_at"] == [16, 16]
    noisy = images.clone()
    noisy[:10] = torch.randn(10, 3, 16, 16, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    assert scorer.score(noisy, prompts, patches=patches).metrics["patch_fid/ci_low"] > result.metrics["patch_fid/ci_high"]
    with pytest.raises(ValueError, match="one size"):
        scorer.score(torch.nn.functional.interpolate(images, size=32), prompts, patches=patches)


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match="bootstrap=5 must be >= 10"):
        ScoringConfig(judge_dir="x", bootstrap=5)
    with pytest.raises(ValueError, match="judge_dir is not set"):
        ScoringConfig()


def test_score_reference_validity_and_report(judge_dir: Path, tiny_clip_file: Path, make_squares, template, tmp_path: Path) -> None:
    config = ScoringConfig(
        judge_dir=str(judge_dir), clip_models=((TINY_NAME, str(tiny_clip_file)),), bootstrap=20, kid_subsets=5,
        cache_dir=str(tmp_path / "cache"),
    )
    scorer = Scorer(config)
    calls: list[int] = []
    reference = scorer.reference(reference_set(make_squares, 48, calls), template)
    again = scorer.reference(reference_set(make_squares, 48, calls), template)
    assert len(calls) == 1  # second call read the cache
    assert torch.equal(reference.features["judge"].features, again.features["judge"].features)
    assert reference.validity is not None and set(reference.validity.accuracy) == {"color", "position"}
    assert not reference.validity.reliable  # a random-init judge cannot pass 0.95

    images, attrs = make_squares(40, seed=20, brightness=0.8)
    prompts = [template.render(a) for a in attrs]
    result = scorer.score(images, prompts, reference, attrs=attrs, template=template, seeds=range(100, 140))
    clip_name = f"clip_score/{TINY_NAME}/tiny-weights"
    expected = {
        "fid/judge", "fid/judge/ci_low", "fid/judge/ci_high", "kid/judge", "kid/judge/std", "kid/judge/ci_low",
        "kid/judge/ci_high", "clip_score/judge", "clip_score/judge/se", clip_name, f"{clip_name}/se",
        "attr_acc/judge/color", "attr_acc/judge/position", "attr_acc/judge/mean", "cost/score_seconds",
        "diversity/judge", "diversity/judge/se", f"diversity/{TINY_NAME}/tiny-weights",
        f"diversity/{TINY_NAME}/tiny-weights/se", "diversity/judge/data", "diversity/judge/data/se",
        "noise_share", "noise_share/se",
    }
    assert set(result.metrics) == expected
    assert result.metrics["noise_share"] == 0.0  # dimmer squares, no rougher than the real ones
    real_roughness = roughness(to_uint8(make_squares(48, seed=10)[0], "real")[0])
    assert torch.equal(again.roughness, real_roughness)  # cached beside the features, read back
    assert result.params["noise_share"]["threshold"] == pytest.approx(2 * float(real_roughness.max()))
    noisy = images.clone()
    noisy[:10] = torch.randn(10, 3, 16, 16, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    assert scorer.score(noisy, prompts, reference).metrics["noise_share"] == pytest.approx(10 / 40)
    # Diversity is the judge's: the generated images grouped by prompt, the real ones by caption.
    assert result.metrics["diversity/judge"] == pytest.approx(prompt_diversity(result.states["fid"]["judge"][0], prompts).mean)
    real_captions = [template.render(a) for a in make_squares(48, seed=10)[1]]
    assert result.metrics["diversity/judge/data"] == pytest.approx(
        prompt_diversity(reference.features["judge"].features, real_captions).mean
    )
    assert "diversity/judge" in result.unreliable
    assert result.params["fid/judge"]["n_generated"] == 40 and result.params["fid/judge"]["n_reference"] == 48
    assert result.params["fid/judge"]["weights_sha256"] == scorer.plan.judge.sha256
    assert result.params[clip_name]["weight"] == 100.0 and result.params[clip_name]["pretrained"] == str(tiny_clip_file)
    assert result.params["images"]["seed_range"] == [100, 139]
    assert "fid/judge" in result.unreliable and clip_name not in result.unreliable
    assert result.per_item["attr_acc/judge/color"].shape == (40,)
    assert result.params["attr_acc/judge"]["protocol"] == "zero-shot choice among the attribute's values"
    judge_features = result.states["fid"]["judge"][0]  # row i = image i, for paired comparisons of settings
    assert judge_features.shape == (40, reference.features["judge"].features.shape[1])

    records = [
        make_record(
            {"sampler": sampler, "steps": 20, "guidance": w, "hires": False, "schedule": "linear", "nfe": 20},
            {"seconds": 1.0 + w, "network_evals": 40},
            result,
        )
        for sampler in ("ddim", "euler")
        for w in (1.0, 3.0)
    ]
    paths = write_report(records, tmp_path / "report", grids={"ddim w=3": images[:16]})
    report = json.loads(paths["json"].read_text())
    assert len(report["records"]) == 4 and report["records"][0]["judge_validity"]["reliable"] is False
    with Image.open(paths["pareto"]) as png:
        assert png.format == "PNG" and png.size[0] > 100
    page = paths["html"].read_text()
    assert "†" in page and "unreliable" in page and page.count("data:image/png;base64") == 3


def test_record_needs_the_setting_keys() -> None:
    with pytest.raises(ValueError, match="lacks \\['nfe'\\]"):
        make_record({"sampler": "ddim", "steps": 1, "guidance": 1, "hires": False, "schedule": "x"}, {}, None)


def test_judge_without_fid_still_measures_validity(judge_dir: Path, make_squares, template, tmp_path: Path) -> None:
    scorer = Scorer(ScoringConfig(extractors=(), judge_dir=str(judge_dir), cache_dir=str(tmp_path)))
    reference = scorer.reference(reference_set(make_squares, 40, []), template)
    assert reference.validity is not None and reference.validity.n_images == 40
    images, attrs = make_squares(8, seed=3)
    result = scorer.score(images, [template.render(a) for a in attrs], reference)
    assert not any(name.startswith(("fid/", "kid/")) for name in result.metrics)
    assert "clip_score/judge" in result.unreliable


def test_faithful_diversity_counts_only_images_with_every_attribute_right(
    judge_dir: Path, make_squares, template, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, attrs = make_squares(40, seed=20)
    prompts = [template.render(a) for a in attrs]
    right = np.arange(40) < 24  # images 0-23 have every attribute right; 24-31 miss the position only
    correct = {"color": right | (np.arange(40) < 32), "position": right}
    monkeypatch.setattr(metric_module, "attribute_accuracy", lambda *args, **kwargs: AttributeAccuracy(correct))
    scorer = Scorer(ScoringConfig(extractors=(), judge_dir=str(judge_dir), cache_dir=str(tmp_path)))
    result = scorer.score(images, prompts, attrs=attrs, template=template)
    embeddings = scorer.judge.encode_images(to_uint8(images, "test")[0], 64)
    expected = prompt_diversity(embeddings[:24], prompts[:24])
    assert expected is not None and expected.mean != pytest.approx(prompt_diversity(embeddings, prompts).mean)
    assert result.metrics["diversity/judge/faithful"] == pytest.approx(expected.mean)
    assert result.params["diversity/judge/faithful"]["n_prompts"] == expected.per_prompt.size
