"""The documentation's own links: every relative link and #anchor in README.md,
docs/*.md and the examples' READMEs leads somewhere, so that moving a section cannot
silently break another page.

Anchors are GitHub's: a heading's text, lower-cased, without punctuation, spaces made
hyphens, and -1, -2, … after a repeated one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from localcompute.web.openapi import build_openapi

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "examples").glob("*/README.md")),
]

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
INLINE_CODE = re.compile(r"`+[^`]*`+")
LINK = re.compile(r"(?<!!)\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks (links and headings there are code)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (Markdown markup as written)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").replace("*", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in _prose(page.read_text(encoding="utf-8")):
        if match := HEADING.match(line):
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[str]:
    targets = []
    for line in _prose(page.read_text(encoding="utf-8")):
        targets += LINK.findall(INLINE_CODE.sub("", line))
    return [t for t in targets if not SCHEME.match(t)]


def broken_links(page: Path) -> list[str]:
    """Each relative link of `page` whose file or heading does not exist, as written."""
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no file {os.path.relpath(linked, ROOT)}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {os.path.relpath(linked, ROOT)}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert broken_links(page) == []


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        # As GitHub renders them (the README linked these before the move to docs/).
        (
            "Reliability: what a crash can and cannot do",
            "reliability-what-a-crash-can-and-cannot-do",
        ),
        (
            "Ocean Node's dialect: ocean.js 8 and the VS Code extension",
            "ocean-nodes-dialect-oceanjs-8-and-the-vs-code-extension",
        ),
        (
            "`localcompute jobs`: see and steer what is there",
            "localcompute-jobs-see-and-steer-what-is-there",
        ),
        ("The `[pool]` table — one for all", "the-pool-table--one-for-all"),
        ("data_dir and run_as_user", "data_dir-and-run_as_user"),
    ],
)
def test_anchors_are_githubs_slugs(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_a_broken_link_or_anchor_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Twice\n\n## Twice\n")
    page = tmp_path / "README.md"
    page.write_text(
        "# Top\n\n[ok](docs/a.md#twice-1) [ok](#top) [web](https://example.org/x#y)\n"
        "`[in code](nowhere.md)`\n\n```\n[in a block](nowhere.md)\n```\n\n"
        "[gone](docs/b.md) [no heading](docs/a.md#twice-2) [no anchor](#bottom)\n"
    )
    assert broken_links(page) == [
        "docs/b.md: no file docs/b.md",
        "docs/a.md#twice-2: no heading #twice-2 in docs/a.md",
        "#bottom: no heading #bottom in README.md",
    ]


def test_the_operator_document_says_runningjobs_narrows_to_a_sent_owner() -> None:
    operation = build_openapi("operator")["paths"]["/api/v1/operator/runningjobs"]["get"]
    assert "owner" in {p["name"] for p in operation["parameters"]}
    assert "owner + nonce" in operation["description"]
