"""Caption schemas: an attribute vocabulary plus the template that turns attributes into a prompt.

Evaluation builds zero-shot candidate captions by swapping one attribute of a caption and
re-rendering it, so every dataset with ground-truth attributes exposes its schema instead of
hard-coding strings in two places.
"""

from __future__ import annotations

import itertools
import string
from dataclasses import dataclass
from typing import Iterator, Mapping


@dataclass(frozen=True)
class CaptionSchema:
    """``template`` is a ``str.format`` pattern whose fields are exactly the keys of ``values``.

    ``values`` maps each attribute name to its ordered vocabulary (the order is the class index).
    """

    template: str
    values: Mapping[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        fields = {name for _, name, _, _ in string.Formatter().parse(self.template) if name}
        if fields != set(self.values):
            raise ValueError(
                f"caption template {self.template!r} uses fields {sorted(fields)} but the vocabulary "
                f"defines {sorted(self.values)}; they must be the same"
            )
        for name, vocabulary in self.values.items():
            if len(vocabulary) == 0 or len(set(vocabulary)) != len(vocabulary):
                raise ValueError(f"attribute {name!r} needs distinct, non-empty values, got {list(vocabulary)}")

    def attribute_values(self) -> dict[str, list[str]]:
        """The vocabulary as plain lists (what a config or a report stores)."""
        return {name: list(vocabulary) for name, vocabulary in self.values.items()}

    def caption(self, attrs: Mapping[str, str]) -> str:
        """Render ``attrs`` (one value per attribute, extra keys are an error) into a prompt."""
        if set(attrs) != set(self.values):
            raise ValueError(f"caption needs attributes {sorted(self.values)}, got {sorted(attrs)}")
        for name, value in attrs.items():
            if value not in self.values[name]:
                raise ValueError(f"{name}={value!r} is not in the vocabulary {list(self.values[name])}")
        return self.template.format(**attrs)

    def combinations(self) -> Iterator[dict[str, str]]:
        """Every attribute combination, last attribute varying fastest."""
        names = list(self.values)
        for combo in itertools.product(*(self.values[name] for name in names)):
            yield dict(zip(names, combo))
