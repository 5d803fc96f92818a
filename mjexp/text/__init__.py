"""Text encoders (tiny / open_clip / hf / domain_clip) and the domain CLIP trainer.

The contract (:mod:`mjexp.text.base`) imports only torch; the encoders and the trainer, which pull
in open_clip and Lightning, load on first use, so ``from mjexp.text.base import ...`` stays cheap.
"""

from importlib import import_module
from typing import Any

from mjexp.text.base import TextEmbedding, TextEncoder, warn_truncated

_LAZY = {
    "ENCODERS": "mjexp.text.encoders",
    "build_text_encoder": "mjexp.text.encoders",
    "DomainClipConfig": "mjexp.text.clip_module",
    "TextEncoderModule": "mjexp.text.clip_module",
    "train_domain_clip": "mjexp.text.clip_train",
    "read_metrics": "mjexp.text.clip_train",
}

__all__ = ["TextEmbedding", "TextEncoder", "warn_truncated", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'mjexp.text' has no attribute {name!r}")
    return getattr(import_module(_LAZY[name]), name)
