"""The domain CLIP's token cache: the tokenizer's own ids, each distinct prompt tokenised once."""

from __future__ import annotations

import pytest
import torch
from open_clip.tokenizer import SimpleTokenizer

from mjexp.text.tokens import TokenCache, tokenize_checked


class CountingTokenizer:
    """open_clip's SimpleTokenizer, counting the prompts it is asked to tokenise."""

    def __init__(self) -> None:
        self.inner, self.prompts_seen = SimpleTokenizer(context_length=12), 0

    def __call__(self, texts: list[str], context_length: int) -> torch.Tensor:
        self.prompts_seen += len(texts)
        return self.inner(texts, context_length=context_length)


def test_token_cache_returns_the_tokenizers_ids_and_tokenises_each_prompt_once():
    tokenizer = CountingTokenizer()
    cache = TokenCache(tokenizer, 12, 0, "test")
    batches = [["a red circle", "a blue square", "a red circle"], ["a blue square", "a green star"]]
    for prompts in batches:
        expected = tokenize_checked(SimpleTokenizer(context_length=12), prompts, 12, 0, "test")
        assert torch.equal(cache(prompts), expected)
    # three distinct prompts, each through both tokenisations of tokenize_checked (the longer one checks length)
    assert tokenizer.prompts_seen == 2 * 3


def test_token_cache_starts_over_when_full_and_still_warns_on_long_prompts():
    tokenizer = CountingTokenizer()
    cache = TokenCache(tokenizer, 12, 0, "test", max_prompts=2)
    cache(["one", "two"])
    ids = cache(["three", "one"])  # would hold 3: starts over with this batch's prompts
    assert torch.equal(ids, tokenize_checked(SimpleTokenizer(context_length=12), ["three", "one"], 12, 0, "test"))
    assert len(cache._ids) == 2
    with pytest.warns(UserWarning, match=r"1 prompt\(s\) longer than the test context of 12 tokens"):
        cache([" ".join(["red"] * 20)])
