"""The README is for people: it opens with the two set-up commands, stays short, and its links resolve.

CI (``.ci/run``) and users rely on the opening ``make demo`` / ``make test`` block; the depth lives in
docs/ pages, so every relative link (and every ``#anchor`` into a Markdown page) must point at something.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 200
OPENING = [
    "# edge-sdk",
    "",
    "```bash",
    "make demo   # creates .venv, installs everything, runs the end-to-end demo",
    "make test   # creates .venv, installs everything, runs ruff and the test suite",
    "```",
]
#: the pages the README's tour hands its depth to
TOUR_PAGES = ["docs/runtime.md", "docs/conversion.md", "docs/devices.md", "docs/realtime.md"]
#: Markdown pages whose links are checked like the README's (the ones the README tour introduced)
CHECKED = [README, *(ROOT / p for p in TOUR_PAGES)]

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def links(md: Path) -> list[str]:
    """Link targets in ``md``'s prose (code blocks skipped), in order."""
    return LINK.findall(FENCE.sub("", md.read_text(encoding="utf-8")))


def relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I)  # http:, https:, mailto: ... are not checked


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    body = FENCE.sub("", md.read_text(encoding="utf-8"))
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", body, re.M)}


def broken(md: Path, root: Path = ROOT) -> list[str]:
    """``md``'s relative links that point at no file, or at a heading its page does not have."""
    root = root.resolve()
    bad = []
    for target in filter(relative, links(md)):
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            bad.append(f"{target}: {dest.relative_to(root) if dest.is_relative_to(root) else dest} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading '#{anchor}' in {dest.name} (has {sorted(anchors(dest))})")
    return bad


def test_readme_opens_with_the_make_demo_and_make_test_block():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert lines[: len(OPENING)] == OPENING


def test_readme_is_at_most_200_lines():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines; move depth to docs/ (limit {MAX_LINES})"


@pytest.mark.parametrize("md", CHECKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_file(md):
    assert md.exists(), f"{md.relative_to(ROOT)} is missing"
    assert broken(md) == []


def test_readme_links_each_tour_page():
    targets = {t.partition("#")[0] for t in links(README)}
    assert set(TOUR_PAGES) <= targets, f"not linked from README.md: {sorted(set(TOUR_PAGES) - targets)}"


def test_link_check_reports_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# Page\n\n## Audio and voice activity\n", encoding="utf-8")
    md = tmp_path / "README.md"
    md.write_text(
        "[ok](docs/page.md#audio-and-voice-activity) [web](https://example.com/x)\n"
        "[gone](docs/missing.md) [bad anchor](docs/page.md#nope)\n"
        "```bash\n[in code](not/checked.md)\n```\n",
        encoding="utf-8",
    )
    assert broken(md, tmp_path) == [
        "docs/missing.md: docs/missing.md does not exist",
        "docs/page.md#nope: no heading '#nope' in page.md (has ['audio-and-voice-activity', 'page'])",
    ]
