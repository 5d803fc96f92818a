"""Read an MLflow experiment written by ``mjexp.train`` into measurements to compare.

The layout (``mjexp.runs.train_run`` and ``mjexp.runs.eval_run.grid_evaluation``): one parent run per training job, tagged
``override.<key>`` with the job's Hydra overrides; one nested child run per evaluated sampling
setting, with params ``setting.<config path>`` and metrics such as ``fid/judge``. A measurement is
one child (one setting of one training), or the parent alone when nothing was evaluated. Its
*factors* (what defines its arm) are the training overrides except the replicate key (``seed``)
plus the setting; the replicate key says which repeat it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

OVERRIDE_TAG = "override."
PARENT_TAG = "mlflow.parentRunId"
SETTING_PARAM = "setting."
SETTING_TAG = "mjexp.setting"  # what mjexp.runs.eval_run.grid_evaluation tags a setting's run with (its label)
# What mjexp.runs.eval_run.grid_evaluation logs of the judge that scored a setting (``metric_definitions`` params).
JUDGE_WEIGHTS_PARAM = "metric_definitions.judge/weights_sha256"
COST_METRICS = {
    "generation_s": "cost/generation_seconds",
    "images_per_s": "cost/images_per_second",
    "nfe": "cost/nfe",
}


@dataclass
class Measurement:
    """One evaluated setting of one training run (see the module docstring)."""

    run_id: str
    parent_id: str
    run_name: str  # a setting's label under its parent (unique there; kept by a sync to another store)
    replicate: str | None
    training: dict[str, str]  # the training run's overrides, minus the replicate key
    setting: dict[str, str]  # the evaluated sampling setting (empty without evaluation)
    metrics: dict[str, float]
    costs: dict[str, float]
    params: dict[str, str] = field(default_factory=dict)
    # The domain CLIP's text_encoder.seed of the training run (None for other encoders): seed
    # repeats that keep it fixed measure the diffusion model's randomness only.
    encoder_seed: str | None = None

    @property
    def factors(self) -> dict[str, str]:
        """Everything that defines the arm: training overrides, then the setting."""
        return {**self.training, **self.setting}


@dataclass
class FailedRun:
    """A training run that did not finish (FAILED, KILLED, or still RUNNING): what it was asked
    to do and, when it failed, why."""

    run_id: str
    run_name: str
    status: str
    factors: dict[str, str]
    error: str


def search_all_runs(client: Any, experiment_id: str, filter_string: str = "") -> list[Any]:
    """Every active run of an experiment (all result pages)."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def training_factors(run: Any, replicate_key: str) -> dict[str, str]:
    """A parent run's overrides (``override.<key>`` tags), minus the replicate key."""
    return {
        key[len(OVERRIDE_TAG) :]: value
        for key, value in run.data.tags.items()
        if key.startswith(OVERRIDE_TAG) and key[len(OVERRIDE_TAG) :] != replicate_key
    }


def run_seconds(run: Any) -> float | None:
    """Wall-clock duration of a finished run."""
    if run.info.end_time and run.info.start_time:
        return (run.info.end_time - run.info.start_time) / 1000.0
    return None


def newest_per_setting(children: list[Any]) -> list[Any]:
    """One child per evaluated setting (its ``mjexp.setting`` tag), the newest: a training resumed
    after a crash in its evaluation evaluates its settings again under the same parent, and those
    are one measurement. Children without the tag are kept as they are."""
    newest: dict[str, Any] = {}
    for child in sorted(children, key=lambda c: (c.info.start_time or 0, c.info.end_time or 0)):
        newest[child.data.tags.get(SETTING_TAG) or child.info.run_id] = child
    return list(newest.values())


def measurements_from_runs(
    runs: Iterable[Any], replicate_key: str = "seed", keep_parents: set[str] | None = None
) -> tuple[list[Measurement], list[FailedRun]]:
    """Split runs into measurements (finished trainings x settings) and failed trainings.

    ``keep_parents`` restricts to those training runs (e.g. the result of a ``--filter``).
    """
    runs = list(runs)
    parents = {r.info.run_id: r for r in runs if PARENT_TAG not in r.data.tags}
    if keep_parents is not None:
        parents = {k: v for k, v in parents.items() if k in keep_parents}
    children: dict[str, list[Any]] = {}
    for r in runs:
        parent_id = r.data.tags.get(PARENT_TAG)
        if parent_id in parents:
            children.setdefault(parent_id, []).append(r)

    measurements, failed = [], []
    for parent_id, parent in parents.items():
        factors = training_factors(parent, replicate_key)
        if parent.info.status != "FINISHED":
            error = parent.data.tags.get("error", "(no error recorded)")
            failed.append(FailedRun(parent_id, parent.info.run_name, parent.info.status, factors, error))
            continue
        replicate = parent.data.params.get(replicate_key)
        domain_clip = parent.data.params.get("text_encoder.name") == "domain_clip"
        encoder_seed = parent.data.params.get("text_encoder.seed") if domain_clip else None
        wall = run_seconds(parent)
        settings = newest_per_setting([c for c in children.get(parent_id, []) if c.info.status == "FINISHED"]) or [None]
        for child in settings:
            source = child or parent
            setting = {
                k[len(SETTING_PARAM) :]: v for k, v in source.data.params.items() if k.startswith(SETTING_PARAM)
            } if child else {}
            costs = {name: source.data.metrics[key] for name, key in COST_METRICS.items() if key in source.data.metrics}
            if wall is not None:
                costs["run_wall_s"] = wall
            measurements.append(
                Measurement(
                    run_id=source.info.run_id,
                    parent_id=parent_id,
                    run_name=source.info.run_name or "",
                    replicate=replicate,
                    training=factors,
                    setting=setting,
                    metrics=dict(source.data.metrics),
                    costs=costs,
                    params=dict(source.data.params),
                    encoder_seed=encoder_seed,
                )
            )
    return measurements, failed
