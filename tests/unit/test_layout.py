"""The layout stays readable (docs/architecture.md): no two modules share a file name and no two
public classes share a name across the packages, and architecture.md names every subpackage."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mjexp", "evaluation", "sweeps", "shapes_world")


def modules() -> list[Path]:
    return [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]


def repeated(pairs: list[tuple[str, Path]]) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = defaultdict(list)
    for name, path in pairs:
        seen[name].append(str(path.relative_to(ROOT)))
    return {name: paths for name, paths in seen.items() if len(paths) > 1}


def test_no_two_modules_share_a_file_name() -> None:
    files = [(p.name, p) for p in modules() if p.name != "__init__.py"]
    assert len(files) > 50 and repeated(files) == {}


def test_no_two_public_classes_share_a_name() -> None:
    classes = [(node.name, p) for p in modules() for node in ast.parse(p.read_text(encoding="utf-8")).body
               if isinstance(node, ast.ClassDef) and not node.name.startswith("_")]
    assert len(classes) > 30 and repeated(classes) == {}


def test_architecture_names_every_subpackage() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    packages = {p.parent for p in modules() if p.name == "__init__.py"}
    assert [str(p.relative_to(ROOT)) for p in sorted(packages) if f"{p.name}/" not in text] == []
