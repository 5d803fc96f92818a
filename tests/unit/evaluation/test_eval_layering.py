"""Layer independence: no module under evaluation/ imports mjexp (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import evaluation

ROOT = Path(evaluation.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_no_module_imports_mjexp() -> None:
    files = sorted(ROOT.rglob("*.py"))
    assert len(files) > 5  # the scan sees the package
    offenders = {str(f.relative_to(ROOT)): sorted(m for m in imported_modules(f) if m.split(".")[0] == "mjexp") for f in files}
    assert {f: m for f, m in offenders.items() if m} == {}


def test_the_scan_detects_an_import(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text("import os\nfrom mjexp.data import shapes\n")
    assert "mjexp.data" in imported_modules(sample)
