"""settings.json: what a provisioned device keeps so it can reconnect without provisioning again.

    {"assignedHub", "deviceId", "primaryConnectionString", "secondaryConnectionString", "payload"}

The connection strings are IoT Hub's usual `HostName=...;DeviceId=...;SharedAccessKey=...`; the
payload is what DPS returned (the allocation webhook's `payload`, or null). The file holds device
keys, so it is written 0600 through `secrets_file.write_secret_file`, and nothing here puts a key in a
message: `ConnectionString.masked()` is what output shows.

Pure apart from `read_settings` / `write_settings`, which only do the file I/O.

Errors: `secrets_file.SecretFileError` (a `UsageError`) for a file that cannot be read or lacks a field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.secrets_file import SecretFileError, write_secret_file

__all__ = ["ConnectionString", "DeviceSettings", "read_settings", "write_settings"]

_FIELDS = ("HostName", "DeviceId", "SharedAccessKey")


@dataclass(frozen=True, kw_only=True)
class ConnectionString:
    """A device connection string with a shared access key (no module id, no gateway)."""

    host_name: str
    device_id: str
    shared_access_key: str = field(repr=False)

    @classmethod
    def parse(cls, text: str, *, source: str) -> ConnectionString:
        """Parse `HostName=..;DeviceId=..;SharedAccessKey=..`; the error never echoes the text."""
        parts: dict[str, str] = {}
        for part in text.split(";"):
            name, sep, value = part.partition("=")
            if sep and name:
                parts[name.strip()] = value.strip()
        for name in _FIELDS:
            if not parts.get(name):
                raise SecretFileError(f"{source}: expected a connection string with {name}=")
        return cls(
            host_name=parts["HostName"],
            device_id=parts["DeviceId"],
            shared_access_key=parts["SharedAccessKey"],
        )

    def __str__(self) -> str:
        return (
            f"HostName={self.host_name};DeviceId={self.device_id};"
            f"SharedAccessKey={self.shared_access_key}"
        )

    def masked(self) -> str:
        """The connection string with its key replaced by `****`, for output."""
        return f"HostName={self.host_name};DeviceId={self.device_id};SharedAccessKey=****"


@dataclass(frozen=True, kw_only=True)
class DeviceSettings:
    """The hub DPS assigned, the device id, both connection strings and DPS's payload."""

    assigned_hub: str
    device_id: str
    primary: ConnectionString
    secondary: ConnectionString
    payload: Any = None

    @classmethod
    def for_device(
        cls, *, hub: str, device_id: str, primary_key: str, secondary_key: str, payload: Any
    ) -> DeviceSettings:
        """Settings for a device registered to `hub` holding these two keys."""
        return cls(
            assigned_hub=hub,
            device_id=device_id,
            primary=ConnectionString(
                host_name=hub, device_id=device_id, shared_access_key=primary_key
            ),
            secondary=ConnectionString(
                host_name=hub, device_id=device_id, shared_access_key=secondary_key
            ),
            payload=payload,
        )

    def to_json(self) -> str:
        """The settings.json document."""
        return json.dumps(
            {
                "assignedHub": self.assigned_hub,
                "deviceId": self.device_id,
                "primaryConnectionString": str(self.primary),
                "secondaryConnectionString": str(self.secondary),
                "payload": self.payload,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str, *, source: str = "settings.json") -> DeviceSettings:
        """Parse a settings.json document; SecretFileError names `source` and the field."""
        try:
            document: Any = json.loads(text)
        except ValueError:
            raise SecretFileError(f"{source}: not JSON") from None
        if not isinstance(document, dict):
            raise SecretFileError(f"{source}: expected a JSON object")
        strings: dict[str, str] = {}
        for name in ("assignedHub", "deviceId", "primaryConnectionString"):
            value = document.get(name)
            if not isinstance(value, str) or not value:
                raise SecretFileError(f"{source} {name}: expected a non-empty string")
            strings[name] = value
        primary = ConnectionString.parse(
            strings["primaryConnectionString"], source=f"{source} primaryConnectionString"
        )
        secondary_text = document.get("secondaryConnectionString")
        if not isinstance(secondary_text, str):
            raise SecretFileError(f"{source} secondaryConnectionString: expected a string")
        secondary = ConnectionString.parse(
            secondary_text, source=f"{source} secondaryConnectionString"
        )
        return cls(
            assigned_hub=strings["assignedHub"],
            device_id=strings["deviceId"],
            primary=primary,
            secondary=secondary,
            payload=document.get("payload"),
        )


def read_settings(path: Path) -> DeviceSettings | None:
    """The settings at `path`, or None when there is no such file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise SecretFileError(f"{path}: cannot read: {error.strerror}") from None
    return DeviceSettings.from_json(text, source=str(path))


def write_settings(path: Path, settings: DeviceSettings) -> None:
    """Write (or replace) settings.json atomically with mode 0600."""
    write_secret_file(path, settings.to_json() + "\n", force=True)
