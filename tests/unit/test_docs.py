"""README.md and docs/: every relative link reaches a file and a heading in it, every `make` target exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]+`")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
MAKE_TARGET = re.compile(r"\bmake ([a-z][a-z0-9-]*)")


def without_code(text: str) -> str:
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lowercased, without punctuation, spaces as dashes."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(document: Path) -> set[str]:
    """Every heading's anchor, a repeated one numbered as GitHub numbers it (-1, -2, ...)."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", document.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(document: Path) -> list[str]:
    """The relative links of ``document`` whose file or heading does not exist, each with the reason."""
    broken = []
    for target in LINK.findall(without_code(document.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check
            continue
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        if not linked.exists():
            broken.append(f"{target}: no file {linked.relative_to(ROOT) if linked.is_relative_to(ROOT) else linked}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with the anchor #{anchor} in {linked.name}")
    return broken


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):(?!=)", (ROOT / "Makefile").read_text(), re.M))


def named_make_targets(document: Path) -> set[str]:
    """The targets of the `make ...` commands a document shows, in code spans and code blocks."""
    text = document.read_text()
    code = [block.group(0) for block in FENCE.finditer(text)] + INLINE_CODE.findall(FENCE.sub("", text))
    return {target for snippet in code for target in MAKE_TARGET.findall(snippet)}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: str(d.relative_to(ROOT)))
def test_every_relative_link_reaches_a_file_and_heading(document):
    assert broken_links(document) == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: str(d.relative_to(ROOT)))
def test_every_make_target_named_exists(document):
    assert named_make_targets(document) - makefile_targets() == set()


def test_the_docs_exist_and_the_readme_links_to_each():
    readme_links = {target.partition("#")[0] for target in LINK.findall(without_code((ROOT / "README.md").read_text()))}
    assert len(DOCUMENTS) > 1
    assert {f"docs/{document.name}" for document in DOCUMENTS[1:]} <= readme_links


def test_a_broken_link_or_anchor_is_reported(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## Keys in `Key Vault`, and more\n")
    document = tmp_path / "doc.md"
    document.write_text(
        "# Doc\n\n[fine](other.md#keys-in-key-vault-and-more) [self](#doc) [gone](missing.md) "
        "[wrong heading](other.md#keys) [nowhere](#nothing) `[in code](missing.md)`\n"
        "```\n[in a block](missing.md)\n```\n1. a step\n   ```sh\n   [in an indented block](missing.md)\n   ```\n"
    )
    reported = broken_links(document)
    assert [line.split(":")[0] for line in reported] == ["missing.md", "other.md#keys", "#nothing"]


def test_github_slugs_number_repeated_headings(tmp_path):
    document = tmp_path / "doc.md"
    document.write_text("# A\n## Use with SPIRE\n## Use with SPIRE\n```\n# not a heading\n```\n## `make bench`: 1.5x?\n")
    assert anchors(document) == {"a", "use-with-spire", "use-with-spire-1", "make-bench-15x"}
