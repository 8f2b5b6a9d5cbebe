"""Device secrets files: what `derive-key` writes and the simulator reads.

`secrets.json` holds one device's *derived* keys, never the group keys:
``{"provisioningHost", "idScope", "registrationId", "primaryKey", "secondaryKey"}``.
`derive_secrets` derives them (the rules are the pure `sas` package's); `write_secret_file` writes
atomically with mode 0600 (an existing file only with `force`); `read_secret_file` /
`DeviceSecrets.from_json` load and check one. This module is the one place secrets files are
written and read.

Errors:

    UsageError           bad input; names the argument or file (the CLIs' exit code 2)
    └── SecretFileError  a secrets file that cannot be read or lacks a field
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.files import write_private
from sas import (
    KeyFormatError,
    RegistrationIdError,
    decode_key,
    derive_device_key,
    validate_registration_id,
)

__all__ = [
    "DeviceSecrets",
    "SecretFileError",
    "UsageError",
    "derive_secrets",
    "read_secret_file",
    "write_secret_file",
]


class UsageError(Exception):
    """Bad input; the message names the argument and what was expected. Exit code 2."""


class SecretFileError(UsageError):
    """A secrets file that cannot be read or lacks a field; names the file and the field."""


@dataclass(frozen=True, kw_only=True)
class DeviceSecrets:
    """What a device needs to provision: where DPS is, who it is, and its derived keys."""

    provisioning_host: str
    id_scope: str
    registration_id: str
    primary_key: str = field(repr=False)
    secondary_key: str = field(repr=False)

    def to_json(self, *, indent: int | None = 2) -> str:
        """The secrets.json document (one line with ``indent=None``, for JSON Lines)."""
        document = {
            "provisioningHost": self.provisioning_host,
            "idScope": self.id_scope,
            "registrationId": self.registration_id,
            "primaryKey": self.primary_key,
            "secondaryKey": self.secondary_key,
        }
        return json.dumps(document, indent=indent)

    @classmethod
    def from_json(cls, text: str, *, source: str = "secrets.json") -> DeviceSecrets:
        """Parse a secrets.json document; SecretFileError names ``source`` and the bad field."""
        try:
            document: Any = json.loads(text)
        except ValueError:
            raise SecretFileError(f"{source}: not JSON") from None
        if not isinstance(document, dict):
            raise SecretFileError(f"{source}: expected a JSON object")
        values: dict[str, str] = {}
        for name in ("provisioningHost", "idScope", "registrationId", "primaryKey", "secondaryKey"):
            value = document.get(name)
            if not isinstance(value, str) or not value:
                raise SecretFileError(f"{source} {name}: expected a non-empty string")
            values[name] = value
        try:
            validate_registration_id(values["registrationId"])
        except RegistrationIdError as error:
            raise SecretFileError(f"{source} registrationId: {error.problem}") from None
        for name in ("primaryKey", "secondaryKey"):
            try:
                decode_key(values[name], name=f"{source} {name}")
            except KeyFormatError as error:
                raise SecretFileError(str(error)) from None
        return cls(
            provisioning_host=values["provisioningHost"],
            id_scope=values["idScope"],
            registration_id=values["registrationId"],
            primary_key=values["primaryKey"],
            secondary_key=values["secondaryKey"],
        )


def read_secret_file(path: Path) -> DeviceSecrets:
    """Load a secrets.json written by `derive-key`; SecretFileError if it is unusable."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise SecretFileError(f"{path}: cannot read: {_reason(error)}") from None
    return DeviceSecrets.from_json(text, source=str(path))


def derive_secrets(
    provisioning_host: str,
    id_scope: str,
    registration_id: str,
    group_primary_key: str,
    group_secondary_key: str,
) -> DeviceSecrets:
    """Derive a device's secrets; raise RegistrationIdError or KeyFormatError on bad input."""
    validate_registration_id(registration_id)
    return DeviceSecrets(
        provisioning_host=provisioning_host,
        id_scope=id_scope,
        registration_id=registration_id,
        primary_key=derive_device_key(group_primary_key, registration_id),
        secondary_key=derive_device_key(group_secondary_key, registration_id),
    )


def write_secret_file(path: Path, data: str, *, force: bool) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600 (``devtools.files.write_private``).

    Without ``force`` an existing path (even a dangling symlink) raises FileExistsError. With
    ``force`` the rename replaces whatever is there, never writing through a symlink.
    """
    write_private(path, data, exclusive=not force)


def _reason(error: BaseException) -> str:
    return error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
