"""The app settings a local host gives the Functions app: `local.settings.json`, as `func start` reads it.

Core Tools reads `local.settings.json` in the app's root and hands its `Values` to the worker as
environment variables, except those the environment already sets: the environment wins. The local
Functions host does the same, so one settings file serves `func start` and `python -m emulator up`:

- `read_values(path)`: the `Values` object, every value a string (numbers and booleans are
  refused naming the key, as Core Tools does); `IsEncrypted: true` is refused (it cannot be
  decrypted outside Core Tools).
- `ensure_settings(path, sample)`: on first run, copy the sample (`local.settings.sample.json`)
  into place, 0600 (the file is where storage connection strings and keys go).
- `merged(values, environ)`: what the app sees.

Errors:

    LocalSettingsError   the file cannot be read or is not what Core Tools accepts; names the
                         file and the field, never a value
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from devtools.files import write_private

__all__ = ["SETTINGS_FILE", "LocalSettingsError", "ensure_settings", "merged", "read_values"]

SETTINGS_FILE = "local.settings.json"
SAMPLE_FILE = "local.settings.sample.json"


class LocalSettingsError(ValueError):
    """`local.settings.json` cannot be used; the message names the file and the field."""


def read_values(path: Path) -> dict[str, str]:
    """The `Values` of a `local.settings.json`."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise LocalSettingsError(f"{path}: cannot be read ({error.strerror})") from None
    except ValueError as error:
        raise LocalSettingsError(f"{path}: expected JSON ({error})") from None
    if not isinstance(document, dict):
        raise LocalSettingsError(f"{path}: expected a JSON object with a Values object")
    if document.get("IsEncrypted") is True:
        raise LocalSettingsError(
            f"{path}: IsEncrypted: true; only Core Tools can decrypt it (func settings decrypt)"
        )
    values = document.get("Values", {})
    if not isinstance(values, dict):
        raise LocalSettingsError(f"{path}: Values: expected an object of strings")
    for name, value in values.items():
        if not isinstance(value, str):
            raise LocalSettingsError(
                f"{path}: Values.{name}: expected a string (write numbers and booleans in quotes)"
            )
    return dict(values)


def ensure_settings(path: Path, sample: Path) -> bool:
    """Create `path` from `sample` when it does not exist yet; True when it was created."""
    if path.exists():
        return False
    try:
        text = sample.read_text(encoding="utf-8")
    except OSError as error:
        raise LocalSettingsError(f"{sample}: cannot be read ({error.strerror})") from None
    try:
        write_private(path, text, exclusive=True)
    except FileExistsError:
        return False
    return True


def merged(values: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """The settings the app sees: the file's values, then the environment over them."""
    return {**values, **environ}
