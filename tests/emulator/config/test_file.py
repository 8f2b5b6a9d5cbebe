"""Tests for emulator.config.file: missing keys generated and written back; operators' new keys."""

from __future__ import annotations

import base64
import stat
import tempfile
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.config import ConfigError, load_config, missing_keys, write_enrollment_key
from tests.emulator.config.example import EXAMPLE, KEY_A, KEY_B, example
from tests.strategies import symmetric_keys


def test_missing_keys_lists_slots_in_file_order() -> None:
    """missing_keys names the section, index and field of each absent key."""
    data = example()
    del data["enrollment_groups"][0]["secondary_key"]
    data["individual_enrollments"][0]["primary_key"] = ""
    assert missing_keys(data) == [
        ("enrollment_groups", 0, "secondary_key"),
        ("individual_enrollments", 0, "primary_key"),
    ]


def test_load_writes_generated_keys_back_atomically_0600(tmp_path: Path) -> None:
    """Missing keys are generated, written under their table header, the file becomes 0600."""
    text = EXAMPLE.replace(f'primary_key = "{KEY_A}"\n', "")
    path = tmp_path / "emulator.toml"
    path.write_text(text)
    path.chmod(0o644)
    keys = [base64.b64encode(bytes([n]) * 32).decode() for n in (1, 2)]
    made = iter(keys)
    config = load_config(path, make_key=lambda: next(made))
    assert config.enrollment_groups[0].primary_key == keys[0]
    assert config.individual_enrollments[0].primary_key == keys[1]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = path.read_text()
    assert "# the emulator's configuration" in written
    assert "# custom | hashed | static" in written
    assert load_config(path) == config
    assert list(tmp_path.iterdir()) == [path]


def test_load_leaves_a_complete_file_untouched(tmp_path: Path) -> None:
    """A file with every key is parsed and not rewritten."""
    path = tmp_path / "emulator.toml"
    path.write_text(EXAMPLE)
    before = path.stat().st_mtime_ns
    load_config(path, make_key=lambda: pytest.fail("no key should be generated"))
    assert path.stat().st_mtime_ns == before


def test_load_rejects_inline_tables_it_cannot_complete(tmp_path: Path) -> None:
    """Missing keys in an inline array of tables give an error asking for [[...]] tables."""
    path = tmp_path / "c.toml"
    path.write_text('hubs = [{name = "h.azure-devices.net"}]\nenrollment_groups = [{id = "g"}]\n')
    with pytest.raises(ConfigError, match=r"write the entry as a \[\[enrollment_groups\]\] table"):
        load_config(path)


def test_load_names_unreadable_and_non_toml_files(tmp_path: Path) -> None:
    """A missing file and a non-TOML file give ConfigError naming the file."""
    with pytest.raises(ConfigError, match=r"^absent\.toml: file: cannot be read"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[hubs]\n")
    with pytest.raises(ConfigError, match=r"^bad\.toml: file: expected TOML"):
        load_config(bad)


# --- write_enrollment_key: an operator's new key, written into the file -------------------------

KEY_NEW = base64.b64encode(bytes(range(100, 164))).decode()
TWO_OF_EACH = f"""# keys are written back here by the emulator
[[hubs]]
name = "toasters.azure-devices.net"

[[enrollment_groups]]   # the factory's group
id = "Factory-A"
primary_key = "{KEY_A}"
secondary_key = "{KEY_B}"
allocation = "hashed"

[[enrollment_groups]]
id = "factory-b"
# rotated last in March
primary_key="{KEY_A}"
  secondary_key   =   "{KEY_B}"
initial_twin = {{ tags = {{ line = "b" }} }}

[[individual_enrollments]]
registration_id = "dev-42"
primary_key = "{KEY_A}"
secondary_key = "{KEY_B}"

[[individual_enrollments]]
registration_id = "Dev-43"
primary_key = "{KEY_B}"
secondary_key = "{KEY_A}"
"""


def config_file(tmp_path: Path, text: str = TWO_OF_EACH) -> Path:
    path = tmp_path / "emulator.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def changed_lines(before: str, after: str) -> list[tuple[int, str, str]]:
    """(line number, old, new) of every line that differs, for files with the same line count."""
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    assert len(old) == len(new)
    return [(n, a, b) for n, (a, b) in enumerate(zip(old, new, strict=True)) if a != b]


@pytest.mark.parametrize(
    ("section", "name", "field_name", "line"),
    [
        ("enrollment_groups", "factory-a", "primary_key", 6),
        ("enrollment_groups", "FACTORY-B", "secondary_key", 14),
        ("enrollment_groups", "factory-b", "primary_key", 13),
        ("individual_enrollments", "dev-42", "secondary_key", 20),
        ("individual_enrollments", "dev-43", "primary_key", 24),
    ],
)
def test_write_enrollment_key_replaces_exactly_that_line(
    tmp_path: Path, section: str, name: str, field_name: str, line: int
) -> None:
    """The one key line of the entry found by id (any case) changes; every other byte stays."""
    path = config_file(tmp_path)
    write_enrollment_key(path, section, name, field_name, KEY_NEW)
    assert changed_lines(TWO_OF_EACH, path.read_text()) == [
        (line, TWO_OF_EACH.splitlines(keepends=True)[line], f'{field_name} = "{KEY_NEW}"\n')
    ]


def test_write_enrollment_key_inserts_a_missing_key_under_the_header(tmp_path: Path) -> None:
    """An entry without that key gets the line right under its header; nothing else moves."""
    text = TWO_OF_EACH.replace(f'id = "Factory-A"\nprimary_key = "{KEY_A}"\n', 'id = "Factory-A"\n')
    assert text != TWO_OF_EACH
    path = config_file(tmp_path, text)
    write_enrollment_key(path, "enrollment_groups", "factory-a", "primary_key", KEY_NEW)
    lines = path.read_text().splitlines(keepends=True)
    header = lines.index("[[enrollment_groups]]   # the factory's group\n")
    assert lines[header + 1] == f'primary_key = "{KEY_NEW}"\n'
    assert "".join(lines[: header + 1] + lines[header + 2 :]) == text
    assert tomllib.loads(path.read_text())["enrollment_groups"][0]["primary_key"] == KEY_NEW


def test_write_enrollment_key_leaves_the_file_0600_and_load_config_reads_the_new_key(
    tmp_path: Path,
) -> None:
    """The rewritten file is owner-only, and the next load parses the new key without rewriting."""
    path = config_file(tmp_path)
    path.chmod(0o644)
    write_enrollment_key(path, "individual_enrollments", "DEV-43", "secondary_key", KEY_NEW)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.stat().st_mtime_ns
    config = load_config(path, make_key=lambda: pytest.fail("no key should be generated"))
    assert config.individual_enrollments[1].keys == (KEY_B, KEY_NEW)
    assert config.individual_enrollments[0].keys == (KEY_A, KEY_B)
    assert [group.keys for group in config.enrollment_groups] == [(KEY_A, KEY_B)] * 2
    assert path.stat().st_mtime_ns == before
    assert list(tmp_path.iterdir()) == [path]


def test_write_enrollment_key_refuses_an_unknown_id_and_changes_nothing(tmp_path: Path) -> None:
    """An id no entry has: ConfigError naming the section and the id; the file is untouched."""
    path = config_file(tmp_path)
    with pytest.raises(ConfigError) as caught:
        write_enrollment_key(path, "enrollment_groups", "dev-42", "primary_key", KEY_NEW)
    assert caught.value.location == "[[enrollment_groups]]"
    assert "'dev-42'" in caught.value.message
    assert KEY_NEW not in str(caught.value)
    assert path.read_text() == TWO_OF_EACH


def test_write_enrollment_key_refuses_fields_that_are_not_keys(tmp_path: Path) -> None:
    """Only primary_key and secondary_key of the two enrollment sections can be written."""
    path = config_file(tmp_path)
    with pytest.raises(ValueError, match="not an enrollment key"):
        write_enrollment_key(path, "enrollment_groups", "factory-a", "allocation", "static")
    with pytest.raises(ValueError, match="not an enrollment key"):
        write_enrollment_key(path, "hubs", "factory-a", "primary_key", KEY_NEW)
    assert path.read_text() == TWO_OF_EACH


def test_write_enrollment_key_asks_for_tables_when_entries_are_inline(tmp_path: Path) -> None:
    """An inline array of tables cannot be edited line by line: an error asking for [[...]]."""
    text = (
        'hubs = [{name = "h.azure-devices.net"}]\n'
        f'enrollment_groups = [{{id = "g", primary_key = "{KEY_A}", secondary_key = "{KEY_B}"}}]\n'
    )
    path = config_file(tmp_path, text)
    with pytest.raises(ConfigError, match=r"write the entry as a \[\[enrollment_groups\]\] table"):
        write_enrollment_key(path, "enrollment_groups", "g", "primary_key", KEY_NEW)
    assert path.read_text() == text


@given(
    entry=st.integers(0, 3),
    field_name=st.sampled_from(["primary_key", "secondary_key"]),
    key=symmetric_keys(),
)
def test_write_enrollment_key_changes_only_the_chosen_key(
    entry: int, field_name: str, key: str
) -> None:
    """Whatever entry and slot, the parsed file differs from the original in that one key only."""
    section, name = [
        ("enrollment_groups", "factory-a"),
        ("enrollment_groups", "factory-b"),
        ("individual_enrollments", "dev-42"),
        ("individual_enrollments", "dev-43"),
    ][entry]
    with tempfile.TemporaryDirectory() as directory:
        path = config_file(Path(directory))
        write_enrollment_key(path, section, name, field_name, key)
        written = tomllib.loads(path.read_text())
    expected = tomllib.loads(TWO_OF_EACH)
    expected[section][entry % 2][field_name] = key
    assert written == expected
