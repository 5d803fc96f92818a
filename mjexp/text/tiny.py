"""``tiny``: a small transformer over open_clip's bundled BPE tokenizer, trained with the U-Net.

Bidirectional (no causal mask) pre-LN transformer with learned positional embeddings, built from
open_clip's ``TextTransformer``; padding keys are masked out, so a real token's state does not
depend on how much padding follows it. ``pooled`` is the end-of-text token's final state (CLIP's
convention); with bidirectional attention it has seen the whole prompt.
"""

from __future__ import annotations

from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import TextTransformer

from mjexp.text.base import TextEmbedding, TextEncoder
from mjexp.text.tokens import tokenize_checked

PAD_ID = 0  # SimpleTokenizer pads with 0


class TinyTextEncoder(TextEncoder):
    """Trainable small text transformer; ``dim == pooled_dim == width``.

    Most of its parameters are the 49k-row token embedding (49408 x width), hence the modest
    default width: on CPU that table dominates the optimiser step.
    """

    trainable = True

    def __init__(self, width: int = 64, layers: int = 2, heads: int = 4, max_length: int = 32) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"tiny text encoder: width={width} must be divisible by heads={heads}")
        if max_length < 2:
            raise ValueError(f"tiny text encoder: max_length={max_length} must leave room for start/end tokens (>= 2)")
        self.tokenizer = SimpleTokenizer(context_length=max_length)
        self.transformer = TextTransformer(
            context_length=max_length,
            vocab_size=self.tokenizer.vocab_size,
            width=width,
            heads=heads,
            layers=layers,
            output_dim=None,  # no projection: pooled stays in the token space
            no_causal_mask=True,
            use_pad_mask=True,
            pad_id=PAD_ID,
            pool_type="argmax",  # the end-of-text id is the largest in the vocabulary
            output_tokens=True,
        )
        self.dim = self.pooled_dim = width
        self.max_length = max_length

    def encode(self, prompts: list[str]) -> TextEmbedding:
        device = self.transformer.positional_embedding.device
        ids = tokenize_checked(self.tokenizer, prompts, self.max_length, PAD_ID, "tiny").to(device)
        pooled, tokens = self.transformer(ids)
        return TextEmbedding(tokens, ids != PAD_ID, pooled)
