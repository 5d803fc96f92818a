"""``hf``: a Hugging Face transformers text encoder (CLIP text, T5 encoder, BERT-like), frozen.

``tokens`` = the last hidden states. ``pooled`` follows each family's own convention: CLIP's
``pooler_output`` (the end-of-text state, as CLIP was trained), otherwise the mean over real tokens
(sentence-transformers' pooling for MiniLM/BERT-like encoders; T5 has no pooled output).
Remote code is never run, and nothing downloads unless ``allow_download=True``.
"""

from __future__ import annotations

import torch

from mjexp.text.base import TextEmbedding, warn_truncated
from mjexp.text.frozen import FrozenTextEncoder

CLIP_TYPES = ("clip", "clip_text_model")  # a full CLIP checkpoint loads its text half


class HFTextEncoder(FrozenTextEncoder):
    """Frozen transformers encoder from a hub name or a local directory."""

    def __init__(
        self,
        name_or_path: str,
        max_length: int = 77,
        cache_dir: str | None = None,
        allow_download: bool = False,
        cache_size: int = 1024,
    ) -> None:
        super().__init__(cache_size)
        from transformers import (
            AutoConfig,
            AutoModelForTextEncoding,
            AutoTokenizer,
            CLIPTextModel,
        )

        opts = dict(trust_remote_code=False, local_files_only=not allow_download, cache_dir=cache_dir)
        try:
            config = AutoConfig.from_pretrained(name_or_path, **opts)
            model_class = CLIPTextModel if config.model_type in CLIP_TYPES else AutoModelForTextEncoding
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path, **opts)
            self.model = model_class.from_pretrained(name_or_path, **opts)
        except (OSError, ValueError) as err:
            where = "on the Hugging Face hub" if allow_download else "locally (allow_download=false)"
            raise RuntimeError(
                f"could not load Hugging Face text encoder {name_or_path!r} {where}: {str(err).rstrip('.')}. "
                "Pass a local directory with config, tokenizer and weights, or allow_download=true with "
                "internet access."
            ) from err
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and max_length > limit:
            raise ValueError(
                f"hf encoder {name_or_path!r}: max_length={max_length} exceeds the model's {limit} positions"
            )
        self.name = f"hf {name_or_path}"
        self.use_pooler = config.model_type in CLIP_TYPES
        self.max_length = max_length
        self.dim = self.pooled_dim = self.model.config.hidden_size
        self._freeze()

    def _encode(self, prompts: list[str]) -> TextEmbedding:
        lengths = [len(ids) for ids in self.tokenizer(prompts)["input_ids"]]
        warn_truncated(prompts, lengths, self.max_length, self.name)
        batch = self.tokenizer(
            prompts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.model.device)
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        tokens, mask = out.last_hidden_state, batch["attention_mask"].bool()
        pooled = out.pooler_output if self.use_pooler else masked_mean(tokens, mask)
        return TextEmbedding(tokens, mask, pooled)


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``tokens`` (B, L, D) over positions where ``mask`` (B, L) is True."""
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
