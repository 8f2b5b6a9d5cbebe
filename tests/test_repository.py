"""The repository stands alone: no tracked file names a path outside it, or a machine's paths."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A sibling folder reached with ../ (a clone has nothing beside it), and home or build-machine
# paths. Spelt in pieces so that this file does not match itself.
_UP = r"\.\./"
OUTSIDE = re.compile(
    _UP
    + r"(?:"
    + _UP
    + r")*"
    + "sha"
    + r"red\b"
    + r"|(?<![\w.])/(?:wo"
    + r"rk|ro"
    + r"ot|home|Users|fa"
    + r"rm)/"
)
SKIPPED = {"package-lock.json"}


def tracked_files() -> list[Path]:
    """Every file git tracks (the published repository), text only."""
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    files = [ROOT / name.decode() for name in listing if name]
    return [path for path in files if path.name not in SKIPPED and path.is_file()]


def test_there_are_tracked_files() -> None:
    """The scan below sees the repository (a clone, not an export without git)."""
    names = {path.relative_to(ROOT).as_posix() for path in tracked_files()}
    assert {"README.md", "function_app.py", "tests/test_repository.py"} <= names


def test_no_tracked_file_names_a_path_outside_the_repository() -> None:
    """No sibling folder reached with ../, nor a home or build-machine path, in any tracked file."""
    found = []
    for path in tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert found == []


@pytest.mark.parametrize(
    "line",
    [
        "see ." + "./sha" + "red/spec/webhook.md",
        "/wo" + "rk/main/x.py",
        "cd /ro" + "ot/.cache",
        "../." + "./sha" + "red/x",
    ],
)
def test_the_scan_catches_outside_paths(line: str) -> None:
    """The pattern flags the shapes it is meant to (so the scan above can fail)."""
    assert OUTSIDE.search(line)


def test_markdown_links_stay_inside_the_repository() -> None:
    """Every relative link in a tracked Markdown file resolves to a file or folder of the clone."""
    link = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
    broken = []
    for path in tracked_files():
        if path.suffix != ".md":
            continue
        for target in link.findall(path.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            resolved = (path.parent / target).resolve()
            if ROOT not in (resolved, *resolved.parents) or not resolved.exists():
                broken.append(f"{path.relative_to(ROOT)} -> {target}")
    assert broken == []


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings (code fences skipped)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_heading_anchors_follow_github() -> None:
    """Anchors are made as GitHub makes them: lower case, punctuation dropped, repeats numbered."""
    text = "# The web console\n## Admin API (auth `ADMIN`)\n```sh\n# not a heading\n```\n# The web console\n"
    assert heading_anchors(text) == {"the-web-console", "admin-api-auth-admin", "the-web-console-1"}


def test_markdown_anchors_name_a_heading() -> None:
    """Every `#anchor` a tracked Markdown file links to (its own or another file's) is a heading
    there."""
    link = re.compile(r"\]\(([^)#\s]*)#([^)\s]+)\)")
    broken = []
    for path in tracked_files():
        if path.suffix != ".md":
            continue
        for target, anchor in link.findall(path.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            file = (path.parent / target).resolve() if target else path
            if file.suffix != ".md" or not file.is_file():
                continue
            if anchor not in heading_anchors(file.read_text(encoding="utf-8")):
                broken.append(f"{path.relative_to(ROOT)} -> {target}#{anchor}")
    assert broken == []
