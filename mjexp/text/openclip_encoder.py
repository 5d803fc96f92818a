"""``open_clip``: the text tower of any open_clip model, frozen.

``tokens`` are the text transformer's final states (after ``ln_final``; for a Hugging Face text
tower, its last hidden states), ``pooled`` is ``encode_text``'s output: projected to the joint
image-text space and *not* normalised (normalise it yourself for cosine similarities).

Weights never download unless ``allow_download=True``: a pretrained tag must already be in the
local cache (Hugging Face hub cache or ``~/.cache/clip``), otherwise one error says how to get it.
"""

from __future__ import annotations

import os
from pathlib import Path

import open_clip
import torch
from huggingface_hub import try_to_load_from_cache
from open_clip.constants import HF_WEIGHTS_NAME
from open_clip.transformer import text_global_pool
from torch import nn

from mjexp.text.base import TextEmbedding
from mjexp.text.frozen import FrozenTextEncoder
from mjexp.text.tokens import tokenize_checked


class OpenClipTextEncoder(FrozenTextEncoder):
    """Frozen open_clip text tower (the image tower is dropped after loading).

    ``model_name``: a built-in open_clip name (``ViT-B-32``), ``hf-hub:org/repo`` or
    ``local-dir:/path`` (a folder with ``open_clip_config.json`` and weights, e.g. a domain CLIP).
    ``pretrained``: for a built-in name, a tag (``laion2b_s34b_b79k``) or a checkpoint file;
    ``None`` keeps the random initialisation.
    """

    def __init__(
        self,
        model_name: str,
        pretrained: str | None = None,
        cache_dir: str | None = None,
        allow_download: bool = False,
        cache_size: int = 1024,
    ) -> None:
        super().__init__(cache_size)
        source, weights, quick_gelu = resolve_weights(model_name, pretrained, cache_dir, allow_download)
        try:
            model = open_clip.create_model(
                source, pretrained=weights, force_quick_gelu=quick_gelu, cache_dir=cache_dir, weights_only=True
            )
            self.tokenizer = open_clip.get_tokenizer(source, cache_dir=cache_dir)
        except Exception as err:  # open_clip raises bare RuntimeErrors for network and config problems
            raise RuntimeError(
                f"could not load open_clip model {model_name!r} (pretrained={pretrained!r}): {err}"
            ) from err
        model.visual = None
        if getattr(model, "text", None) is not None:  # CustomTextCLIP: its tower returns (pooled, tokens)
            model.text.output_tokens = True
        self.model = model
        self.name = f"open_clip {model_name}"
        hf_tokenizer = getattr(self.tokenizer, "tokenizer", None)  # open_clip's HFTokenizer wraps one
        self.pad_id = 0 if hf_tokenizer is None else hf_tokenizer.pad_token_id  # SimpleTokenizer pads with 0
        self.max_length = model.context_length
        self._freeze()
        probe = self._encode([""])
        self.dim, self.pooled_dim = probe.tokens.shape[-1], probe.pooled.shape[-1]

    def _encode(self, prompts: list[str]) -> TextEmbedding:
        device = next(self.model.parameters()).device
        ids = tokenize_checked(self.tokenizer, prompts, self.max_length, self.pad_id, self.name).to(device)
        tokens, pooled = text_states(self.model, ids)
        return TextEmbedding(tokens, ids != self.pad_id, pooled)


def text_states(model: nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(token states, pooled) of an open_clip model's text tower; pooled equals ``encode_text(ids)``."""
    tower = getattr(model, "text", None)
    if tower is not None:
        pooled, tokens = tower(ids)
        return tokens, pooled
    # CLIP keeps its text tower's parts as attributes: CLIP.encode_text's steps, keeping the states.
    x = model.token_embedding(ids) + model.positional_embedding
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))
    pooled = text_global_pool(x, ids, model.text_pool_type, eos_token_id=model.text_eos_id)
    projection = model.text_projection
    if isinstance(projection, nn.Linear):
        pooled = projection(pooled)
    elif projection is not None:
        pooled = pooled @ projection
    return x, pooled


def resolve_weights(
    model_name: str, pretrained: str | None, cache_dir: str | None, allow_download: bool
) -> tuple[str, str | None, bool]:
    """(model source, weights file or tag, force_quick_gelu) for ``open_clip.create_model``.

    Offline, a pretrained tag becomes the cached checkpoint file it names (and its QuickGELU flag,
    which open_clip itself only warns about), and ``hf-hub:`` becomes the cached snapshot folder.
    """
    schema, identifier = open_clip.factory.parse_model_name(model_name)
    if schema == "local-dir" or allow_download or (pretrained is None and schema is None):
        return model_name, pretrained, False
    how = (
        "run once with allow_download=true on a machine with internet access, or pass a local "
        "checkpoint file as pretrained=/path/to/weights (or a folder as model_name=local-dir:/path)"
    )
    if schema == "hf-hub":
        config = _cached_hf_file(identifier, "open_clip_config.json", cache_dir)
        if config is None:
            raise FileNotFoundError(f"open_clip model {model_name!r} is not in the local Hugging Face cache; {how}")
        return f"local-dir:{Path(config).parent}", None, False
    if os.path.isfile(pretrained):
        return model_name, pretrained, False
    tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise ValueError(
            f"open_clip pretrained={pretrained!r} is neither a file nor a tag of {model_name!r}; its tags: {tags}"
        )
    checkpoint = _cached_tag_checkpoint(tag_cfg, cache_dir)
    if checkpoint is None:
        raise FileNotFoundError(
            f"open_clip weights {model_name!r} pretrained={pretrained!r} are not in the local cache; {how}"
        )
    return model_name, checkpoint, bool(tag_cfg.get("quick_gelu", False))


def _cached_tag_checkpoint(tag_cfg: dict, cache_dir: str | None) -> str | None:
    """Where open_clip's ``download_pretrained`` would have put this tag's weights, if they are there."""
    if "file" in tag_cfg:
        return tag_cfg["file"]
    if tag_cfg.get("hf_hub"):
        repo, filename = os.path.split(tag_cfg["hf_hub"])
        filename = filename or HF_WEIGHTS_NAME
        safe = "open_clip_model.safetensors" if filename == HF_WEIGHTS_NAME else Path(filename).stem + ".safetensors"
        for candidate in (safe, filename):
            found = _cached_hf_file(repo, candidate, cache_dir)
            if found is not None:
                return found
    if tag_cfg.get("url"):
        path = Path(cache_dir or "~/.cache/clip").expanduser() / os.path.basename(tag_cfg["url"])
        if path.is_file():
            return str(path)
    return None


def _cached_hf_file(repo: str, filename: str, cache_dir: str | None) -> str | None:
    found = try_to_load_from_cache(repo, filename, cache_dir=cache_dir)
    return found if isinstance(found, str) else None
