"""Versioned prompt sets: ``<name>.jsonl`` rows ``{"prompt", "attrs"}`` plus ``<name>.meta.json``.

The meta file carries the set's version, the attribute vocabulary and the caption template (a
``str.format`` pattern whose fields are the attribute keys). Evaluation needs the template to
build zero-shot candidates by swapping one attribute and re-rendering the caption; it reads the
files instead of importing the data code (``evaluation`` never imports ``mjexp``).
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

PROMPTS_DIR = Path(__file__).parent / "prompts"
# Multi-object attribute keys carry an object suffix ("color_1"); the attribute is the stem.
_OBJECT_SUFFIX = re.compile(r"_\d+$")


def attribute_of(key: str) -> str:
    """The attribute a key belongs to: ``color_2`` -> ``color``; ``color`` -> ``color``."""
    return _OBJECT_SUFFIX.sub("", key)


@dataclass(frozen=True)
class CaptionTemplate:
    """``template.format(**attrs)`` renders a caption; ``values`` is each key's vocabulary."""

    template: str
    values: Mapping[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        fields = {name for _, name, _, _ in string.Formatter().parse(self.template) if name}
        if fields != set(self.values):
            raise ValueError(
                f"caption template {self.template!r} has fields {sorted(fields)}, vocabulary has {sorted(self.values)}"
            )

    def render(self, attrs: Mapping[str, str]) -> str:
        return self.template.format(**{key: attrs[key] for key in self.values})

    def groups(self) -> dict[str, list[str]]:
        """Attribute -> its keys (one key per object)."""
        out: dict[str, list[str]] = {}
        for key in self.values:
            out.setdefault(attribute_of(key), []).append(key)
        return out

    @property
    def multi_object(self) -> bool:
        return any(len(keys) > 1 for keys in self.groups().values())

    def swaps(self, attrs: Mapping[str, str], attribute: str) -> list[str]:
        """Captions of ``attrs`` with one key of ``attribute`` changed to each other value."""
        out = []
        for key in self.groups()[attribute]:
            for value in self.values[key]:
                if value != attrs[key]:
                    out.append(self.render({**attrs, key: value}))
        return out


@dataclass(frozen=True)
class PromptSet:
    """Prompts with their ground-truth attributes, the template that renders them and a version."""

    name: str
    version: str
    prompts: tuple[str, ...]
    attrs: tuple[dict[str, str], ...]
    template: CaptionTemplate

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def params(self) -> dict[str, object]:
        """What the prompts are, as recorded with an evaluation (``prompts.*`` in MLflow)."""
        return {"set": self.name, "version": self.version, "n": len(self)}


def load_prompt_set(name_or_path: str | Path) -> PromptSet:
    """Load ``<name>.jsonl`` + ``<name>.meta.json``; a bare name is looked up in ``evaluation/prompts``."""
    path = Path(name_or_path)
    if path.suffix != ".jsonl":
        path = (path if path.parent != Path(".") else PROMPTS_DIR / path).with_suffix(".jsonl")
    meta_path = path.with_name(path.stem + ".meta.json")
    for required in (path, meta_path):
        if not required.is_file():
            raise FileNotFoundError(f"prompt set file {required} not found (available: {available_prompt_sets()})")
    meta = json.loads(meta_path.read_text())
    missing = [key for key in ("version", "caption_template", "attribute_values") if key not in meta]
    if missing:
        raise ValueError(f"{meta_path} lacks {missing}; it needs version, caption_template and attribute_values")
    template = CaptionTemplate(meta["caption_template"], {k: tuple(v) for k, v in meta["attribute_values"].items()})
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for number, row in enumerate(rows, start=1):
        if set(row.get("attrs", {})) != set(template.values):
            raise ValueError(f"{path} row {number}: attrs {row.get('attrs')} do not match keys {sorted(template.values)}")
    return PromptSet(
        name=path.stem,
        version=str(meta["version"]),
        prompts=tuple(row["prompt"] for row in rows),
        attrs=tuple(row["attrs"] for row in rows),
        template=template,
    )


def available_prompt_sets() -> list[str]:
    return sorted(p.stem for p in PROMPTS_DIR.glob("*.jsonl"))
