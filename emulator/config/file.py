"""The configuration file: read it, complete it, and write keys back into it.

`load_config(path)` reads the TOML file, generates the enrollment keys it leaves out and writes them
back (the file then holds keys, so it is written 0600, atomically); `write_enrollment_key` sets one
enrollment's key the same way after an operator regenerated it. Both edit the text, not a re-dump
of the parsed data, so comments and layout stay; only `[[section]]` table forms can be edited.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from devtools.files import write_private
from emulator.config.model import EmulatorConfig
from emulator.config.parse import KEY_FIELDS, SECTIONS, ConfigError, parse_config, parse_toml
from emulator.dps.enrollments import generate_key

log = logging.getLogger(__name__)


def missing_keys(data: Mapping[str, Any]) -> list[tuple[str, int, str]]:
    """Which `(section, index, field)` enrollment keys the data leaves out, in file order."""
    missing: list[tuple[str, int, str]] = []
    for section in SECTIONS:
        entries = data.get(section, [])
        if not isinstance(entries, list):
            continue
        for index, entry in enumerate(entries):
            if isinstance(entry, dict):
                missing.extend(
                    (section, index, name) for name in KEY_FIELDS if entry.get(name) in (None, "")
                )
    return missing


def load_config(path: Path, *, make_key: Callable[[], str] = generate_key) -> EmulatorConfig:
    """Read, complete (generated keys written back) and parse the TOML file at `path`."""
    source = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(source, "file", f"cannot be read ({error.strerror})") from None
    data = parse_toml(text, source)
    missing = missing_keys(data)
    if missing:
        text = _insert_keys(text, missing, make_key, source)
        data = parse_toml(text, source)
        if missing_keys(data):
            raise ConfigError(source, "file", "generated keys could not be written back")
        config = parse_config(data, source=source)
        _write_atomically(path, text)
        log.info("generated %d enrollment key(s) and wrote them to %s", len(missing), source)
        return config
    config = parse_config(data, source=source)
    if _holds_keys(config) and path.stat().st_mode & 0o077:
        log.warning("%s holds enrollment keys but is readable by others; chmod 600 it", source)
    return config


def _holds_keys(config: EmulatorConfig) -> bool:
    return bool(config.enrollment_groups or config.individual_enrollments)


_TABLE_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*(enrollment_groups|individual_enrollments)[ \t]*\]\]")


def _insert_keys(
    text: str, missing: Sequence[tuple[str, int, str]], make_key: Callable[[], str], source: str
) -> str:
    """Add `name = "<key>"` lines right under the `[[section]]` headers that lack them.

    Text insertion keeps the file's comments and layout; only `[[section]]` headers are supported
    (an inline array of tables gets a message asking for that form).
    """
    lines = text.splitlines(keepends=True)
    headers: dict[tuple[str, int], int] = {}
    counts = dict.fromkeys(SECTIONS, 0)
    for number, line in enumerate(lines):
        match = _TABLE_HEADER.match(line)
        if match:
            section = match.group(1)
            headers[(section, counts[section])] = number
            counts[section] += 1
    inserts: dict[int, list[str]] = {}
    for section, index, name in missing:
        if (section, index) not in headers:
            raise ConfigError(
                source,
                f"[[{section}]] #{index + 1}: {name}",
                f"is missing and cannot be written back; write the entry as a [[{section}]] table",
            )
        inserts.setdefault(headers[(section, index)], []).append(f'{name} = "{make_key()}"\n')
    out: list[str] = []
    for number, line in enumerate(lines):
        out.append(line if line.endswith("\n") else line + "\n")
        out.extend(inserts.get(number, []))
    return "".join(out)


_KEY_LINE = re.compile(r"^[ \t]*(primary_key|secondary_key)[ \t]*=")
_ANY_HEADER = re.compile(r"^[ \t]*\[")


def write_enrollment_key(path: Path, section: str, name: str, field_name: str, key: str) -> None:
    """Set one enrollment's `primary_key` or `secondary_key` in the file at `path` (0600, atomic).

    `section` is `enrollment_groups` (found by `id`) or `individual_enrollments` (found by
    `registration_id`), case-insensitively as DPS matches them. Only that one line changes.
    """
    source = path.name
    if section not in SECTIONS or field_name not in KEY_FIELDS:
        raise ValueError(f"{section}.{field_name}: not an enrollment key")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(source, "file", f"cannot be read ({error.strerror})") from None
    entries = parse_toml(text, source).get(section, [])
    id_field = "id" if section == "enrollment_groups" else "registration_id"
    index = next(
        (
            number
            for number, entry in enumerate(entries)
            if isinstance(entry, dict) and str(entry.get(id_field, "")).lower() == name.lower()
        ),
        None,
    )
    if index is None:
        raise ConfigError(source, f"[[{section}]]", f"no entry with {id_field} = {name!r}")
    lines = text.splitlines(keepends=True)
    seen, start = -1, None
    for number, line in enumerate(lines):
        match = _TABLE_HEADER.match(line)
        if match and match.group(1) == section:
            seen += 1
            if seen == index:
                start = number
                break
    if start is None:
        raise ConfigError(
            source,
            f"[[{section}]] #{index + 1}",
            f"cannot be rewritten; write the entry as a [[{section}]] table",
        )
    new_line = f'{field_name} = "{key}"\n'
    end = next((n for n in range(start + 1, len(lines)) if _ANY_HEADER.match(lines[n])), len(lines))
    for number in range(start + 1, end):
        match = _KEY_LINE.match(lines[number])
        if match and match.group(1) == field_name:
            lines[number] = new_line
            break
    else:
        lines.insert(start + 1, new_line)
    updated = "".join(lines)
    if parse_toml(updated, source)[section][index].get(field_name) != key:
        raise ConfigError(
            source, f"[[{section}]] #{index + 1}: {field_name}", "cannot be rewritten"
        )
    _write_atomically(path, updated)


def _write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename; the new file is 0600 since it holds keys."""
    write_private(path, text)
