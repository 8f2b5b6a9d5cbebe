"""Every shell block of the README and docs/ is run by a scenario or says why it cannot be."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.documented.blocks import Block, all_blocks, parse
from tests.documented.test_user_path import RUN_BLOCKS


def test_every_shell_block_has_a_test_directive() -> None:
    """A block without `<!-- test: ... -->` before it fails: either it runs, or it says why not."""
    assert [b.where for b in all_blocks() if not b.directive] == []


def test_skipped_blocks_give_a_reason() -> None:
    """`skip` needs a reason; a skipped block has no id."""
    skipped = [b for b in all_blocks() if "skip" in b.options]
    assert skipped, "the deploy steps need Azure and are skipped"
    assert [b.where for b in skipped if not b.options["skip"].strip() or b.id] == []


def test_block_ids_are_unique_and_each_is_run() -> None:
    """Each id names one block, and the scenarios run every block that has one."""
    ids = Counter(b.id for b in all_blocks() if b.id)
    assert [name for name, count in ids.items() if count > 1] == []
    assert set(ids) == set(RUN_BLOCKS)


def test_the_parser_reads_directives_indentation_and_options(tmp_path: Path) -> None:
    """Options, indented blocks (inside a list) and a missing directive are all seen."""
    (tmp_path / "README.md").write_text(
        "<!-- test: id=a background ready=x/y.json exit=3 -->\n```sh\nmake up\n```\n\n"
        "1. step\n\n   <!-- test: id=b -->\n   ```sh\n   echo one\n   echo two\n   ```\n\n"
        "```sh\nnaked\n```\n\n```python\nprint(1)\n```\n"
    )
    blocks = parse(tmp_path / "README.md", tmp_path)
    assert blocks == [
        Block(
            "README.md",
            2,
            "make up",
            {"id": "a", "background": "", "ready": "x/y.json", "exit": "3"},
            True,
        ),
        Block("README.md", 9, "echo one\necho two", {"id": "b"}, True),
        Block("README.md", 14, "naked", {}, False),
    ]
