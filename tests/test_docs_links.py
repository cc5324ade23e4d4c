"""Every relative link of the project's Markdown files reaches a file, and its ``#anchor`` a heading
there (GitHub's anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered)."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](target), across line breaks too
FENCE = re.compile(r"^```.*?^```", flags=re.M | re.S)


def markdown_files() -> list[Path]:
    skipped = lambda part: part.startswith(".") or part in ("build", "dist")  # noqa: E731
    return sorted(path for path in REPO.rglob("*.md") if not any(map(skipped, path.relative_to(REPO).parts)))


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of Markdown text ``markdown``."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", markdown), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen[f"{slug}-{count}"] = 1
    return set(seen)


def test_the_anchor_rule_gives_githubs_anchors():
    text = "# MIT-BIH inter-patient (DS1 -> DS2), the main job\n## `msresnet1d download`\n## Notes\n## Notes\n"
    assert anchors(text) == {"mit-bih-inter-patient-ds1---ds2-the-main-job", "msresnet1d-download", "notes",
                                "notes-1"}


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_reaches_its_file_and_heading(path):
    broken = []
    for target in LINK.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading with anchor #{anchor} in {linked.relative_to(REPO)}")
    assert not broken, f"{path.relative_to(REPO)}: " + "; ".join(broken)
