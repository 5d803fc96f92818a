"""Preflight: resolve and check every model and weight file an evaluation needs, before anything
is generated, and report all problems in one error instead of failing after hours of sampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evaluation.clip_model import ClipSource, ResolvedClip, resolve_clip
from evaluation.settings import ScoringConfig
from evaluation.features import INCEPTION, Extractor, resolve_extractor
from evaluation.judge import judge_source


class PreflightError(RuntimeError):
    """One or more models needed by the evaluation are missing or failed their checks."""


@dataclass(frozen=True)
class Plan:
    """Everything resolved: FID/KID extractors, the judge, the public CLIP-score models."""

    extractors: dict[str, Extractor]
    judge: ResolvedClip | None
    clip_models: dict[str, ResolvedClip] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, object]:
        out: dict[str, object] = {f"extractor/{name}": e.params for name, e in self.extractors.items()}
        if self.judge is not None:
            out["judge/weights_sha256"] = self.judge.sha256
        out.update({f"clip/{label}/weights_sha256": r.sha256 for label, r in self.clip_models.items()})
        return out


def preflight(config: ScoringConfig) -> Plan:
    """Resolve everything ``config`` asks for; raise PreflightError listing every failure."""
    errors: list[str] = []

    def attempt(what: str, resolve):
        try:
            return resolve()
        except (OSError, ValueError, RuntimeError) as error:
            errors.append(f"- {what}: {error}")
            return None

    extractors = {}
    for name in config.extractors:
        extractor = attempt(
            f"fid/{name}",
            lambda name=name: resolve_extractor(
                name,
                layer=config.inception_layer if name == INCEPTION else None,
                weights_path=config.weights_paths.get(name),
                judge_dir=config.judge_dir,
                allow_network=config.allow_network,
            ),
        )
        if extractor is not None:
            extractors[name] = extractor
    judge = None
    if config.judge_dir is not None:
        judge = attempt("judge", lambda: resolve_clip(judge_source(config.judge_dir)))
    clip_models = {}
    for model, pretrained in config.clip_models:
        source = ClipSource(model, pretrained)
        resolved = attempt(f"clip_score/{source.label}", lambda s=source: resolve_clip(s, config.allow_network))
        if resolved is not None:
            clip_models[source.label] = resolved
    if errors:
        raise PreflightError("evaluation preflight failed; nothing was generated:\n" + "\n".join(errors))
    return Plan(extractors, judge, clip_models)
