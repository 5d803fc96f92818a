"""Keep the console readable: each message once, and no chatter that is not about the run.

Lightning attaches its own console handler when it is imported before Hydra configures logging,
so every Lightning message would print twice (its handler and Hydra's); open_clip logs a dozen
INFO lines on the root logger per model load; Lightning repeats its device banner ("GPU available:
...") for every internal Trainer (one per evaluation setting), advertises a cloud logger and warns that
frozen submodules (the conditioning encoder, the EMA copy) are in eval mode, which is intended
here; a fresh MLflow store logs its migrations. Warnings and errors from every library still get through.
"""

from __future__ import annotations

import logging
import warnings

_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")
# Database set-up and migration chatter of a fresh MLflow store.
_QUIET_BELOW_WARNING = ("mlflow.store.db.utils", "alembic")
_EXPECTED_WARNINGS = (
    r"Found \d+ module\(s\) in eval mode",  # frozen text encoder and EMA copy, by design
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning internals on new torch
    # Small data: an epoch shorter than log_every_n_steps. Lightning counts that interval in steps
    # across epochs, so nothing is lost.
    r"The number of training batches \(\d+\) is smaller than the logging interval",
)


# Lightning's device banner: the same lines at every Trainer's construction and launch.
_BANNER_PREFIXES = ("GPU available:", "TPU available:", "HPU available:", "LOCAL_RANK:")


class _DropChatter(logging.Filter):
    """Drops open_clip's INFO records and Lightning's advertising tip, and passes each distinct
    line of Lightning's device banner once (per handler: a handler has its own filter)."""

    def __init__(self) -> None:
        super().__init__()
        self._banner_seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        if "open_clip" in record.pathname:
            return False
        message = record.getMessage()
        if message.startswith(_BANNER_PREFIXES):
            if message in self._banner_seen:
                return False
            self._banner_seen.add(message)
            return True
        return not message.startswith("💡 Tip")


def quiet_third_party_logs() -> None:
    """Route Lightning's messages through the root handlers only and filter known chatter.

    Without Hydra (the benchmark scripts) the root logger has no handler yet; the first module-level
    ``logging.info`` of any library would then install an unfiltered one, so install ours first."""
    import lightning  # noqa: F401  (importing it attaches the handlers removed here)

    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    for name in _QUIET_BELOW_WARNING:
        logging.getLogger(name).setLevel(logging.WARNING)
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(message)s")
    for handler in root.handlers:
        if not any(isinstance(f, _DropChatter) for f in handler.filters):
            handler.addFilter(_DropChatter())
    for pattern in _EXPECTED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
