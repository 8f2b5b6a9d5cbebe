"""Key files in the state directory end up owner-only, whatever mode they were found with."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from emulator.functions.host import state_key

NAME = "function-key"


def mode(path: Path) -> int:
    """The permission bits of `path`."""
    return stat.S_IMODE(path.stat().st_mode)


def key_file(tmp_path: Path, content: str, file_mode: int) -> Path:
    """`<tmp_path>/function-key` holding `content`, with exactly `file_mode`."""
    path = tmp_path / NAME
    path.write_text(content, encoding="utf-8")
    path.chmod(file_mode)
    assert mode(path) == file_mode
    return path


@pytest.mark.parametrize("file_mode", [0o644, 0o640, 0o604, 0o666, 0o777])
def test_a_stored_key_readable_by_others_is_made_0600(tmp_path: Path, file_mode: int) -> None:
    """A key found readable beyond its owner is kept, and the file is chmod 0600."""
    path = key_file(tmp_path, "stored-key\n", file_mode)
    assert state_key(tmp_path, NAME) == ("stored-key", False)
    assert mode(path) == 0o600
    assert path.read_text(encoding="utf-8") == "stored-key\n"


@pytest.mark.parametrize("file_mode", [0o600, 0o400])
def test_a_private_key_file_keeps_its_mode(tmp_path: Path, file_mode: int) -> None:
    """A key file already owner-only (0600, or the stricter 0400) is read and left as it is."""
    path = key_file(tmp_path, "stored-key", file_mode)
    assert state_key(tmp_path, NAME) == ("stored-key", False)
    assert mode(path) == file_mode


@pytest.mark.parametrize("content", ["", "\n", "  \n"])
def test_an_empty_0644_file_gets_a_generated_key_stored_0600(tmp_path: Path, content: str) -> None:
    """An empty (or blank) 0644 key file is replaced by a generated key, stored 0600."""
    path = key_file(tmp_path, content, 0o644)
    key, generated = state_key(tmp_path, NAME)
    assert generated
    assert key.strip()
    assert mode(path) == 0o600
    assert path.read_text(encoding="utf-8").strip() == key
    assert state_key(tmp_path, NAME) == (key, False)
