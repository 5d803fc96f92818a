"""MLflow tags that say which Hydra job produced a run, so runs of one sweep can be grouped.

``override.<key>`` holds each command-line (or sweeper) override of the job, e.g.
``override.schedule=cosine`` and ``override.seed=1``; ``python -m sweeps.compare`` groups runs into
arms by these tags, and the MLflow UI can filter on them (``tags."override.schedule" = "cosine"``).
"""

from __future__ import annotations

import re
from pathlib import Path

# MLflow tag keys allow letters, digits, ``_ - . /`` and spaces.
_UNSAFE = re.compile(r"[^\w\-./ ]")


def hydra_job_tags() -> dict[str, str]:
    """Tags for the current Hydra job: its overrides and, in a multirun, sweep folder and job number."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {}
    hydra = HydraConfig.get()
    overrides = list(hydra.overrides.task)
    tags = {"mjexp.overrides": " ".join(overrides)}
    for override in overrides:
        key, _, value = override.partition("=")
        tags[f"override.{_UNSAFE.sub('_', key.lstrip('+~'))}"] = value
    if hydra.mode == RunMode.MULTIRUN:
        tags["mjexp.sweep_dir"] = str(Path(hydra.runtime.cwd) / hydra.sweep.dir)
        tags["mjexp.job_num"] = str(hydra.job.num)
    return tags
