"""The shell blocks of the README and docs/, with what each says about how it is tested.

Every fenced block in `sh`, `bash`, `shell` or `console` is preceded by an HTML comment (invisible
on GitHub) that says what the test suite does with it:

    <!-- test: id=NAME [background] [ready=PATH] [exit=N] [stand-in] -->
    <!-- test: skip="why it cannot run here" -->

`id` names the block for the scenarios in `test_user_path.py`, which run it as a user types it:
`bash -e` in the repository's root, as a subprocess. `background` blocks keep running (until the
scenario stops them with Ctrl-C's SIGINT); `ready` is the file whose appearance means they are up.
`exit` is the status the block ends with when it is not 0. `stand-in` marks a command that cannot
be installed here (`func start`), for which the scenario starts a stand-in. A block without a
comment, or with `skip` but no reason, fails `test_blocks.py`: a block not meant to run says so.
"""

from __future__ import annotations

import re
import shlex
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHELLS = ("sh", "bash", "shell", "console")
DOCUMENTS = ("README.md", "docs")
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[A-Za-z]*)\s*$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*test:(?P<body>.*?)-->\s*$")


@dataclass(frozen=True)
class Block:
    """One shell block and its test directive."""

    source: str  # repository-relative file
    line: int  # 1-based line of the opening fence
    script: str
    options: dict[str, str] = field(default_factory=dict)
    directive: bool = False

    @property
    def id(self) -> str | None:
        return self.options.get("id")

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


def documents(root: Path = ROOT) -> list[Path]:
    """README.md and every Markdown file under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def parse(path: Path, root: Path = ROOT) -> list[Block]:
    """The shell blocks of one Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    number = 0
    while number < len(lines):
        opening = _FENCE.match(lines[number])
        if opening is None or not opening.group("lang"):
            number += 1
            continue
        indent, lang = opening.group("indent"), opening.group("lang")
        end = number + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if lang in SHELLS:
            options, directive = _directive(lines, number)
            body = "\n".join(line.removeprefix(indent) for line in lines[number + 1 : end])
            blocks.append(
                Block(
                    source=path.relative_to(root).as_posix(),
                    line=number + 1,
                    script=textwrap.dedent(body),
                    options=options,
                    directive=directive,
                )
            )
        number = end + 1
    return blocks


def _directive(lines: list[str], fence: int) -> tuple[dict[str, str], bool]:
    previous = fence - 1
    while previous >= 0 and not lines[previous].strip():
        previous -= 1
    match = _DIRECTIVE.match(lines[previous]) if previous >= 0 else None
    if match is None:
        return {}, False
    options: dict[str, str] = {}
    for token in shlex.split(match.group("body")):
        name, _, value = token.partition("=")
        options[name] = value
    return options, True


def all_blocks(root: Path = ROOT) -> list[Block]:
    """Every shell block of the documents."""
    return [block for path in documents(root) for block in parse(path, root)]


def block(block_id: str, root: Path = ROOT) -> Block:
    """The block with this id (exactly one)."""
    found = [b for b in all_blocks(root) if b.id == block_id]
    if len(found) != 1:
        raise LookupError(f"{len(found)} documented blocks have id {block_id!r}")
    return found[0]
