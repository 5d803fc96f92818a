"""One factory for every text encoder a config can name (``conf/text_encoder/<name>.yaml``).

``tiny`` trains with the U-Net; ``open_clip``, ``hf`` and ``domain_clip`` are frozen and cache the
embeddings of repeated prompts. A ``domain_clip`` is an open_clip ``local-dir`` folder written by
:func:`mjexp.text.clip_train.train_domain_clip`.
"""

from __future__ import annotations

from typing import Any, Callable

from mjexp.text.base import TextEncoder
from mjexp.text.hf_encoder import HFTextEncoder
from mjexp.text.openclip_encoder import OpenClipTextEncoder
from mjexp.text.tiny import TinyTextEncoder


def domain_clip_encoder(path: str, cache_size: int = 1024) -> OpenClipTextEncoder:
    """The frozen text tower of a domain CLIP folder (see ``train_domain_clip``)."""
    return OpenClipTextEncoder(f"local-dir:{path}", cache_size=cache_size)


ENCODERS: dict[str, Callable[..., TextEncoder]] = {
    "tiny": TinyTextEncoder,
    "open_clip": OpenClipTextEncoder,
    "hf": HFTextEncoder,
    "domain_clip": domain_clip_encoder,
}


def build_text_encoder(name: str, **kwargs: Any) -> TextEncoder:
    """``ENCODERS[name](**kwargs)``; an unknown name is an error listing the known ones."""
    if name not in ENCODERS:
        raise ValueError(f"unknown text encoder {name!r}; choose one of {sorted(ENCODERS)}")
    return ENCODERS[name](**kwargs)
