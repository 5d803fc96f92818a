"""The judge must not be the model's own text encoder, nor share its initial weights."""

from __future__ import annotations

import warnings
from pathlib import Path

from mjexp.text.clip_train import read_metrics


def shared_initial_weights(first: str | Path, second: str | Path) -> int | None:
    """The seed of two trained domain CLIPs that began from identical weights, else None.

    The domain-CLIP trainer draws initial weights from the seed alone, so one seed and one
    architecture give the same start whatever the split; folders without a record (not trained
    here) give None.
    """
    try:
        keys = [read_metrics(folder).get("key") or {} for folder in (first, second)]
    except FileNotFoundError:
        return None
    same = all(key.get(field) == keys[0].get(field) for key in keys for field in ("seed", "model_cfg"))
    return keys[0].get("seed") if same and "seed" in keys[0] else None


def check_judge_independence(judge_dir: Path, conditioning: Path) -> None:
    """The judge must not be the model's own text encoder, nor start from its initial weights: a
    judge that shares the encoder's init may agree with it more than with the images (docs/evaluation.md,
    "Judge independence")."""
    if conditioning.resolve() == judge_dir.resolve():
        raise ValueError("the judge must not be the conditioning encoder; give eval.judge its own seed")
    seed = shared_initial_weights(judge_dir, conditioning)
    if seed is not None:
        warnings.warn(
            f"the judge and the conditioning domain CLIP have the same architecture and seed ({seed}), so both "
            "started from the same weights and the judge is not independent of the model it scores. Set "
            "eval.judge.seed to a seed that no text_encoder.seed of the compared runs uses",
            stacklevel=2,
        )
