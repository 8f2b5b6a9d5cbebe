"""Private files: 0600 from the first byte, atomic, never written through a symlink."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from devtools.files import write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_new_file_is_owner_only(tmp_path: Path) -> None:
    """A new file holds the data and is mode 0600."""
    target = tmp_path / "secrets.json"
    write_private(target, '{"k": 1}')
    assert target.read_text() == '{"k": 1}'
    assert mode(target) == 0o600


def test_replacing_tightens_a_loose_file(tmp_path: Path) -> None:
    """Replacing a world-readable file leaves a 0600 file with the new content."""
    target = tmp_path / "config.toml"
    target.write_text("old")
    target.chmod(0o644)
    write_private(target, b"new")
    assert (target.read_text(), mode(target)) == ("new", 0o600)


def test_exclusive_refuses_existing_and_dangling_symlink(tmp_path: Path) -> None:
    """exclusive=True refuses an existing file and a dangling symlink, changing neither."""
    existing = tmp_path / "a.json"
    existing.write_text("keep")
    with pytest.raises(FileExistsError):
        write_private(existing, "new", exclusive=True)
    assert existing.read_text() == "keep"
    link = tmp_path / "b.json"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        write_private(link, "new", exclusive=True)
    assert not (tmp_path / "nowhere").exists()


def test_symlink_is_replaced_not_written_through(tmp_path: Path) -> None:
    """Replacing a symlink puts a regular file in its place; its target is untouched."""
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    link = tmp_path / "settings.json"
    link.symlink_to(victim)
    write_private(link, "data")
    assert not link.is_symlink()
    assert (link.read_text(), victim.read_text()) == ("data", "untouched")


def test_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    """If writing fails, no temporary file and no reserved name remain."""
    target = tmp_path / "x.json"
    with pytest.raises(TypeError):
        write_private(target, 42, exclusive=True)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
