"""The documentation holds together: every relative link of README.md and docs/ reaches a file (and,
with ``#anchor``, a heading of it, by GitHub's slugs), and the README stays a short front page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README_MAX_LINES = 200

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\n\s*\n).)+?\1", re.DOTALL)  # inline code, never across a blank line
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*:|//)")  # http:, https:, mailto:, protocol-relative


def doc_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").rglob("*.md"))]


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a fenced block's lines become empty)."""
    lines, fenced = [], False
    for line in text.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
            lines.append("")
        else:
            lines.append("" if fenced else line)
    return lines


def github_slug(heading: str) -> str:
    """GitHub's anchor of a heading: its rendered text, lower case, without punctuation other than
    hyphens and underscores, spaces turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file; repeated headings get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    for line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen[f"{slug}-{count}"] = seen.get(f"{slug}-{count}", 0) + 1
    return set(seen)


def links(path: Path) -> list[str]:
    """The link targets of a markdown file, outside code blocks and code spans."""
    prose = CODE_SPAN.sub("", "\n".join(prose_lines(path.read_text(encoding="utf-8"))))
    return LINK.findall(prose)


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """Every relative link of ``path`` whose file (inside ``root``) or heading anchor is missing."""
    problems = []
    for target in links(path):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path.resolve()
        if not resolved.is_relative_to(root.resolve()):
            problems.append(f"{target}: outside the repository")
            continue
        if not resolved.exists():
            problems.append(f"{target}: no such file")
            continue
        if anchor:
            page = resolved / "README.md" if resolved.is_dir() else resolved
            if page.suffix != ".md" or not page.is_file():
                problems.append(f"{target}: #{anchor} in a file that is not markdown")
            elif anchor not in anchors(page):
                problems.append(f"{target}: no heading #{anchor} in {page.relative_to(root.resolve())}")
    return problems


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_the_readme_is_a_short_front_page() -> None:
    lines = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"


def test_github_slugs() -> None:
    assert github_slug("A better judge (since 2026-11-26)") == "a-better-judge-since-2026-11-26"
    assert github_slug("Comparing runs: `python -m sweeps.compare`") == "comparing-runs-python--m-sweepscompare"
    assert github_slug("Network: 2026-11-26 07:36 UTC: cpu: AMD EPYC") == "network-2026-11-26-0736-utc-cpu-amd-epyc"
    assert github_slug("Super-resolution model (`hires=sr`)") == "super-resolution-model-hiressr"


def test_the_check_finds_broken_links_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# Page\n\n## Same\n\n## Same\n\n```\n## In code\n```\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Top\n\n"
        "[ok](docs/page.md) [ok](docs/page.md#same-1) [ok](#top) [ok](docs/) [web](https://example.org/x.md)\n"
        "`[in code](missing.md)`\n\n```\n[in a block](missing.md)\n```\n"
        "[gone](docs/missing.md) [bad anchor](docs/page.md#nowhere) [code heading](docs/page.md#in-code)\n"
        "[here](#nothing) [out](../elsewhere.md) [twice](docs/page.md#same-2)\n"
    )
    assert broken_links(readme, root=tmp_path) == [
        "docs/missing.md: no such file",
        "docs/page.md#nowhere: no heading #nowhere in docs/page.md",
        "docs/page.md#in-code: no heading #in-code in docs/page.md",
        "#nothing: no heading #nothing in README.md",
        "../elsewhere.md: outside the repository",
        "docs/page.md#same-2: no heading #same-2 in docs/page.md",
    ]


TEST_REFERENCE = re.compile(r"(test_\w+\.py)::(test_\w+)(\*?)")  # test_x_* names the tests it starts


def test_every_cited_test_exists() -> None:
    """``test_x.py::test_name`` in the docs names a test function of that file (tests get renamed);
    ``::test_name_*`` at least one whose name starts so."""
    files = {path.name: path.read_text(encoding="utf-8") for path in (ROOT / "tests").rglob("test_*.py")}
    cited = [(doc.name, m.group(1), m.group(2) + m.group(3)) for doc in doc_files()
             for m in TEST_REFERENCE.finditer(doc.read_text(encoding="utf-8"))]
    assert cited  # the scan sees the docs' references

    def exists(file: str, test: str) -> bool:
        return file in files and f"def {test.rstrip('*')}{'' if test.endswith('*') else '('}" in files[file]

    missing = [c for c in cited if not exists(c[1], c[2])]
    assert missing == []
