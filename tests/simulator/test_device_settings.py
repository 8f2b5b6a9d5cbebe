"""settings.json and secrets.json loading: round trips, masking, and errors that name the field
without echoing a key."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from simulator.device_settings import (
    ConnectionString,
    DeviceSettings,
    read_settings,
    write_settings,
)
from simulator.secrets_file import DeviceSecrets, SecretFileError, derive_secrets, read_secret_file

SECRETS = derive_secrets(
    "global.azure-devices-provisioning.net",
    "0ne00000001",
    "dev-settings-001",
    "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY=",
    "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
)
SETTINGS = DeviceSettings.for_device(
    hub="toasters.azure-devices.net",
    device_id="dev-settings-001",
    primary_key=SECRETS.primary_key,
    secondary_key=SECRETS.secondary_key,
    payload={"welcome": "dev-settings-001"},
)


def test_settings_round_trip_through_a_0600_file(tmp_path: Path) -> None:
    """write_settings then read_settings gives the same value; the file is 0600."""
    path = tmp_path / "settings.json"
    write_settings(path, SETTINGS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_settings(path) == SETTINGS


def test_missing_settings_file_reads_as_none(tmp_path: Path) -> None:
    """No settings.json means "provision", not an error."""
    assert read_settings(tmp_path / "settings.json") is None


def test_masked_connection_string_hides_the_key() -> None:
    """masked() keeps host and device and replaces the key; repr shows no key either."""
    masked = SETTINGS.primary.masked()
    assert (
        masked
        == "HostName=toasters.azure-devices.net;DeviceId=dev-settings-001;SharedAccessKey=****"
    )
    assert SECRETS.primary_key not in repr(SETTINGS)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"assignedHub": None}, "assignedHub"),
        ({"primaryConnectionString": "HostName=x;DeviceId=y"}, "SharedAccessKey"),
        ({"secondaryConnectionString": 7}, "secondaryConnectionString"),
    ],
)
def test_broken_settings_name_the_field(change: dict[str, object], field: str) -> None:
    """A bad field gives a SecretFileError naming it, never the key text."""
    document = json.loads(SETTINGS.to_json()) | change
    with pytest.raises(SecretFileError, match=field) as raised:
        DeviceSettings.from_json(json.dumps(document))
    assert SECRETS.primary_key not in str(raised.value)


def test_connection_string_parse_is_the_inverse_of_str() -> None:
    """str() then parse() is the identity."""
    assert ConnectionString.parse(str(SETTINGS.secondary), source="x") == SETTINGS.secondary


def test_read_secret_file_loads_what_derive_key_writes(tmp_path: Path) -> None:
    """The secrets.json document parses back into the same DeviceSecrets."""
    path = tmp_path / "secrets.json"
    path.write_text(SECRETS.to_json())
    assert read_secret_file(path) == SECRETS


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"primaryKey": "not base64!"}, "primaryKey"),
        ({"registrationId": "has space"}, "registrationId"),
        ({"idScope": ""}, "idScope"),
    ],
)
def test_broken_secrets_name_the_field(change: dict[str, str], message: str) -> None:
    """A bad secrets.json names the field and never echoes the other key."""
    document = json.loads(SECRETS.to_json()) | change
    with pytest.raises(SecretFileError, match=message) as raised:
        DeviceSecrets.from_json(json.dumps(document))
    assert SECRETS.secondary_key not in str(raised.value)


def test_unreadable_secrets_file_says_which(tmp_path: Path) -> None:
    """A missing file is a SecretFileError naming the path."""
    with pytest.raises(SecretFileError, match=r"nothing\.json"):
        read_secret_file(tmp_path / "nothing.json")
