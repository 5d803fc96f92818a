"""The tiny trainable encoder, the frozen-encoder cache and the factory."""

from __future__ import annotations

import pytest
import torch

from mjexp.text.base import TextEmbedding
from mjexp.text.encoders import build_text_encoder
from mjexp.text.frozen import FrozenTextEncoder
from mjexp.text.tiny import TinyTextEncoder

PROMPTS = ["a small red triangle in the top left", "a big blue circle", ""]


@pytest.fixture(scope="module")
def tiny() -> TinyTextEncoder:
    torch.manual_seed(0)
    return build_text_encoder("tiny", width=32, layers=2, heads=4, max_length=16)


def test_tiny_shapes_mask_and_pooled_is_the_end_token(tiny):
    out = tiny.encode(PROMPTS)
    assert out.tokens.shape == (3, 16, 32) and out.pooled.shape == (3, 32) and out.mask.dtype == torch.bool
    ids = tiny.tokenizer(PROMPTS, context_length=16)
    assert torch.equal(out.mask, ids != 0)
    assert out.mask[2].sum() == 2  # the empty prompt is start + end of text
    end = out.mask.sum(dim=1) - 1  # last real token is the end-of-text token
    assert torch.allclose(out.pooled, out.tokens[torch.arange(3), end])
    assert tiny.trainable and tiny.dim == tiny.pooled_dim == 32 and tiny.max_length == 16


def test_tiny_null_embedding_is_the_empty_prompt(tiny):
    null, empty = tiny.null_embedding(4), tiny.encode([""])
    assert null.tokens.shape == (4, 16, 32)
    for got, want in zip((null.tokens, null.mask, null.pooled), (empty.tokens, empty.mask, empty.pooled)):
        assert torch.equal(got, want.expand_as(got))


def test_tiny_real_tokens_ignore_padding(tiny):
    """Changing the padding token's embedding must not move any real token's state."""
    before = tiny.encode(PROMPTS[:2])
    with torch.no_grad():
        tiny.transformer.token_embedding.weight[0] += 5.0
    after = tiny.encode(PROMPTS[:2])
    with torch.no_grad():
        tiny.transformer.token_embedding.weight[0] -= 5.0
    assert torch.allclose(before.tokens[before.mask], after.tokens[after.mask], atol=1e-5)
    assert torch.allclose(before.pooled, after.pooled, atol=1e-5)
    assert not torch.allclose(before.tokens[~before.mask], after.tokens[~after.mask])


def test_tiny_trains(tiny):
    out = tiny.encode(PROMPTS)
    (out.tokens.square().mean() + out.pooled.square().mean()).backward()
    grad = tiny.transformer.transformer.resblocks[0].attn.in_proj_weight.grad
    assert grad is not None and grad.abs().sum() > 0
    tiny.zero_grad()


def test_tiny_truncation_warns_and_keeps_the_end_token(tiny):
    long = " ".join(["red"] * 40)
    with pytest.warns(UserWarning, match=r"1 prompt\(s\) longer than the tiny context of 16 tokens"):
        out = tiny.encode([long, "short"])
    assert out.mask[0].all()
    ids = tiny.tokenizer([long], context_length=16)
    assert ids[0, -1] == tiny.tokenizer.eot_token_id


def test_tiny_exact_fit_does_not_warn(tiny):
    words = ["red"] * 14  # start + 14 + end = 16 tokens
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny.encode([" ".join(words)])
    with pytest.warns(UserWarning):
        tiny.encode([" ".join(words + ["red"])])


def test_unknown_encoder_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown text encoder 'clip'.*domain_clip.*hf.*open_clip.*tiny"):
        build_text_encoder("clip")


class CountingEncoder(FrozenTextEncoder):
    """Frozen toy encoder: embeds each prompt by its characters; counts the prompts it encoded."""

    def __init__(self, cache_size: int) -> None:
        super().__init__(cache_size)
        self.proj = torch.nn.Linear(1, 4)
        self.dim = self.pooled_dim = 4
        self.max_length = 3
        self.encoded: list[str] = []
        self._freeze()

    def _encode(self, prompts: list[str]) -> TextEmbedding:
        self.encoded.extend(prompts)
        x = torch.tensor([[len(p), sum(map(ord, p)), 1] for p in prompts], dtype=self.proj.weight.dtype)
        tokens = self.proj(x[..., None])
        return TextEmbedding(tokens, x > 2, tokens.mean(dim=1))


def test_cache_serves_repeats_without_reencoding_and_matches_uncached():
    enc, ref = CountingEncoder(cache_size=8), CountingEncoder(cache_size=0)
    ref.load_state_dict(enc.state_dict())
    first = enc.encode(["a", "b", "a"])
    assert enc.encoded == ["a", "b"]  # duplicates within one call are encoded once
    second = enc.encode(["b", "c", "a"])
    assert enc.encoded == ["a", "b", "c"] and enc.cache_hits == 2  # b and a of the second call
    want = ref.encode(["b", "c", "a"])
    for got, exp in zip((second.tokens, second.mask, second.pooled), (want.tokens, want.mask, want.pooled)):
        assert torch.equal(got, exp)
    assert torch.equal(first.tokens[0], first.tokens[2])
    assert not second.tokens.requires_grad and not enc.proj.weight.requires_grad


def test_cache_evicts_least_recently_used_and_clears_on_to():
    enc = CountingEncoder(cache_size=2)
    enc.encode(["a", "b"])
    enc.encode(["a"])  # a is now more recent than b
    enc.encode(["c"])  # evicts b
    enc.encoded.clear()
    enc.encode(["a", "b"])
    assert enc.encoded == ["b"]
    enc.to(torch.float64)
    enc.encoded.clear()
    out = enc.encode(["a"])
    assert enc.encoded == ["a"] and out.tokens.dtype == torch.float64


def test_frozen_encoder_stays_in_eval_mode():
    enc = CountingEncoder(cache_size=1)
    parent = torch.nn.Sequential(enc).train()
    assert parent.training and not enc.training
