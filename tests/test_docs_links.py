"""The docs point at what the repository has: every relative Markdown link, and every
``docs/*.md`` named in the docs, the README or a docstring, exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
DOC_PATH = re.compile(r"\bdocs/[\w.-]+\.md\b")


def _markdown() -> list[Path]:
    return sorted([*ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md")])


def test_every_relative_link_in_the_docs_resolves() -> None:
    dead = [
        f"{page.relative_to(ROOT)}: {target}"
        for page in _markdown()
        for target in LINK.findall(page.read_text())
        if "://" not in target and not (page.parent / target).exists()
    ]
    assert dead == []


def test_every_docs_page_named_anywhere_exists() -> None:
    sources = [
        *_markdown(),
        *sorted((ROOT / "src").rglob("*.py")),
        *sorted(ROOT.glob("tests/*.py")),
    ]
    dead = [
        f"{source.relative_to(ROOT)}: {name}"
        for source in sources
        for name in DOC_PATH.findall(source.read_text())
        if not (ROOT / name).exists()
    ]
    assert dead == []


def test_the_docs_index_lists_every_page() -> None:
    index = (ROOT / "docs" / "README.md").read_text()
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"README.md"}
    assert {p for p in pages if f"]({p})" not in index} == set()
