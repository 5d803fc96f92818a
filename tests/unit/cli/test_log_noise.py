"""Console hygiene: Lightning's messages print once through the root handlers; chatter is dropped."""

from __future__ import annotations

import io
import logging

import pytest

from mjexp.runs.log_noise import quiet_third_party_logs


@pytest.fixture
def root_stream():
    """A root handler like the one Hydra installs; restores the loggers afterwards."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    lightning = logging.getLogger("lightning.pytorch")
    saved = (root.level, list(lightning.handlers), lightning.propagate)
    lightning.addHandler(logging.StreamHandler(io.StringIO()))  # what Lightning does at import
    lightning.propagate = False
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(saved[0])
    lightning.handlers[:] = saved[1]
    lightning.propagate = saved[2]


def test_lightning_messages_reach_the_root_handler_once(root_stream: io.StringIO) -> None:
    quiet_third_party_logs()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False")
    assert root_stream.getvalue().count("GPU available: False") == 1
    assert logging.getLogger("lightning.pytorch").handlers == []


def test_lightning_device_banner_prints_once_per_distinct_line(root_stream: io.StringIO) -> None:
    """Every internal Trainer (one per evaluation setting) logs the banner again."""
    quiet_third_party_logs()
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    for _ in range(3):
        rank_zero.info("GPU available: False, used: False")
        rank_zero.info("TPU available: False, using: 0 TPU cores")
        rank_zero.info("Trainer.fit stopped: max_steps=5 reached.")
    rank_zero.info("GPU available: True (cuda), used: True")
    out = root_stream.getvalue()
    assert out.count("GPU available: False, used: False") == 1
    assert out.count("TPU available: False") == 1
    assert out.count("GPU available: True (cuda), used: True") == 1  # a different line still shows
    assert out.count("Trainer.fit stopped") == 3  # other messages are not deduplicated


def test_chatter_is_dropped_but_warnings_pass(root_stream: io.StringIO) -> None:
    quiet_third_party_logs()
    logger = logging.getLogger("any")
    tip = logger.makeRecord("any", logging.INFO, "x.py", 1, "💡 Tip: try a cloud logger", (), None)
    clip_info = logger.makeRecord("root", logging.INFO, "/site-packages/open_clip/factory.py", 1, "Parsing model", (), None)
    clip_warning = logger.makeRecord("root", logging.WARNING, "/site-packages/open_clip/factory.py", 1, "bad tag", (), None)
    ours = logger.makeRecord("mjexp", logging.INFO, "/repo/mjexp/training.py", 1, "val loss 0.1", (), None)
    for record in (tip, clip_info, clip_warning, ours):
        logging.getLogger().handle(record)
    out = root_stream.getvalue()
    assert "Tip" not in out and "Parsing model" not in out
    assert "bad tag" in out and "val loss 0.1" in out


def test_quieting_before_lightning_is_imported_still_removes_its_handlers() -> None:
    """The CLIs quiet the logs before importing the training code (which imports Lightning)."""
    import subprocess
    import sys

    script = (
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stdout, level=logging.INFO, format='root %(message)s')\n"
        "from mjexp.runs.log_noise import quiet_third_party_logs\n"
        "quiet_third_party_logs()\n"
        "import lightning.pytorch\n"
        "logging.getLogger('lightning.pytorch.utilities.rank_zero').info('GPU available: False')\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("GPU available: False") == 1
    assert "GPU available" not in run.stderr


def test_without_a_root_handler_chatter_is_still_dropped() -> None:
    """A script without Hydra: a library's module-level ``logging.info`` must not add an unfiltered
    root handler that prints Lightning's tip (benchmarks.quality printed it before the fix)."""
    import subprocess
    import sys

    script = (
        "import logging\n"
        "from mjexp.runs.log_noise import quiet_third_party_logs\n"
        "quiet_third_party_logs()\n"
        "logging.info('a library calls the root logger')\n"
        "logging.getLogger('lightning.pytorch.utilities.rank_zero').info('\U0001F4A1 Tip: try a cloud logger')\n"
        "logging.getLogger('lightning.pytorch.utilities.rank_zero').warning('a real warning')\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Tip" not in run.stderr and "a real warning" in run.stderr
