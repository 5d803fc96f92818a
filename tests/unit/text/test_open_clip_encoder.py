"""The open_clip encoder: loading weights the way users do, token states, offline errors."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch

from mjexp.text.encoders import build_text_encoder
from mjexp.text.openclip_encoder import text_states

TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 16, "patch_size": 8, "width": 16, "layers": 1, "head_width": 8},
    "text_cfg": {"context_length": 12, "vocab_size": 49408, "width": 24, "heads": 2, "layers": 1},
}
PROMPTS = ["a red square in the top left", "a blue circle", ""]


@pytest.fixture(scope="module", params=[False, True], ids=["CLIP", "CustomTextCLIP"])
def saved_model(request, tmp_path_factory):
    """A random-init tiny open_clip model registered under a test name and saved with torch.save."""
    name = "mjexp-test-tiny-custom" if request.param else "mjexp-test-tiny"
    folder = tmp_path_factory.mktemp("open_clip")
    (folder / f"{name}.json").write_text(json.dumps({**TINY_CFG, "custom_text": request.param}))
    open_clip.add_model_config(folder / f"{name}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(name).eval()
    torch.save(model.state_dict(), folder / "weights.pt")
    return name, str(folder / "weights.pt"), model


def test_local_checkpoint_round_trip(saved_model):
    name, path, model = saved_model
    encoder = build_text_encoder("open_clip", model_name=name, pretrained=path)
    out = encoder.encode(PROMPTS)
    ids = open_clip.get_tokenizer(name)(PROMPTS)
    with torch.no_grad():
        want_pooled = model.encode_text(ids)
    assert torch.allclose(out.pooled, want_pooled, atol=1e-6)  # pooled = projected, unnormalised
    assert out.tokens.shape == (3, 12, 24) and out.pooled.shape == (3, 16)
    assert encoder.dim == 24 and encoder.pooled_dim == 16 and encoder.max_length == 12
    assert torch.equal(out.mask, ids != 0) and out.mask[2].sum() == 2
    assert not any(p.requires_grad for p in encoder.parameters()) and not encoder.trainable
    null = encoder.null_embedding(2)
    assert torch.equal(null.tokens[1], out.tokens[2]) and torch.equal(null.pooled[0], out.pooled[2])


def test_token_states_are_the_final_layer_norm_output(saved_model):
    """Independent reference: capture ln_final's output with a forward hook during encode_text."""
    _, _, model = saved_model
    ln_final = model.text.ln_final if hasattr(model, "text") else model.ln_final
    if hasattr(model, "text"):
        model.text.output_tokens = False
    captured = []
    handle = ln_final.register_forward_hook(lambda module, args, output: captured.append(output))
    ids = open_clip.tokenize(PROMPTS, context_length=12)
    with torch.no_grad():
        pooled_ref = model.encode_text(ids)
        handle.remove()
        if hasattr(model, "text"):
            model.text.output_tokens = True
        tokens, pooled = text_states(model, ids)
    assert torch.allclose(tokens, captured[0], atol=1e-6) and torch.allclose(pooled, pooled_ref, atol=1e-6)


def test_truncation_warns(saved_model):
    name, path, _ = saved_model
    encoder = build_text_encoder("open_clip", model_name=name, pretrained=path)
    with pytest.warns(UserWarning, match="longer than the open_clip .* context of 12 tokens"):
        encoder.encode(["red " * 20])


def test_uncached_pretrained_tag_is_one_clear_error_without_network(tmp_path):
    match = r"'ViT-B-32' pretrained='openai' are not in the local cache.*allow_download"
    with pytest.raises(FileNotFoundError, match=match):
        build_text_encoder("open_clip", model_name="ViT-B-32", pretrained="openai", cache_dir=str(tmp_path))


def test_unknown_tag_lists_the_tags():
    with pytest.raises(ValueError, match=r"'no-such-tag' is neither a file nor a tag of 'ViT-B-32'.*laion2b_s34b_b79k"):
        build_text_encoder("open_clip", model_name="ViT-B-32", pretrained="no-such-tag")


def test_uncached_hf_hub_model_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="'hf-hub:nobody/nothing' is not in the local Hugging Face cache"):
        build_text_encoder("open_clip", model_name="hf-hub:nobody/nothing", cache_dir=str(tmp_path))
