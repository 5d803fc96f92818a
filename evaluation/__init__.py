"""Scoring library: images and prompts in, named metrics with their definitions out.

It never imports ``mjexp`` (docs/architecture.md, layer independence; an import-linter contract). Start with ``Scorer`` (api.py).
"""

from evaluation.api import Reference, ReferenceSet, Scorer, ScoreResult
from evaluation.attributes import paired_difference
from evaluation.settings import ScoringConfig
from evaluation.diversity import prompt_diversity
from evaluation.fid import frechet_distance
from evaluation.kid import kid
from evaluation.preflight import PreflightError, preflight
from evaluation.prompt_sets import load_prompt_set
from evaluation.report import make_record, write_report

__all__ = [
    "ScoringConfig",
    "PreflightError",
    "Reference",
    "ReferenceSet",
    "ScoreResult",
    "Scorer",
    "frechet_distance",
    "kid",
    "load_prompt_set",
    "make_record",
    "paired_difference",
    "preflight",
    "prompt_diversity",
    "write_report",
]
