"""What the simulator's end-to-end tests share: the emulator config, derived secrets, key rolls.

Each test module binds its own 127.45.<n>.1 (the SDK's MQTT port is fixed at 8883) and runs the
emulator in-process with tests/emulator/e2e/harness.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simulator.secrets_file import DeviceSecrets, derive_secrets, write_secret_file
from tests.emulator.e2e.harness import (
    DPS_HOST,
    HEATPUMPS,
    ID_SCOPE,
    TOASTERS,
    RunningEmulator,
    emulator_toml,
    regenerate_group_key,
)

GROUP = "factory"
GROUP_PRIMARY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
GROUP_SECONDARY = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
DISABLED_PRIMARY = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
DISABLED_SECONDARY = "BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ="
HUBS = (TOASTERS, HEATPUMPS)

CONFIG = emulator_toml(
    hubs=HUBS,
    groups=[
        {
            "id": GROUP,
            "primary_key": GROUP_PRIMARY,
            "secondary_key": GROUP_SECONDARY,
            "allocation": "hashed",
            "initial_twin": {"desired": {"state": "ready"}},
        }
    ],
    individuals=[
        {
            "registration_id": "switched-off-001",
            "device_id": "switched-off-001",
            "primary_key": DISABLED_PRIMARY,
            "secondary_key": DISABLED_SECONDARY,
            "enabled": False,
        }
    ],
)


def device_secrets(registration_id: str) -> DeviceSecrets:
    """The device's secrets derived from the test group's keys."""
    return derive_secrets(DPS_HOST, ID_SCOPE, registration_id, GROUP_PRIMARY, GROUP_SECONDARY)


def write_secrets(path: Path, secrets: DeviceSecrets) -> Path:
    """Write secrets.json as `derive-key` does and return its path."""
    write_secret_file(path, secrets.to_json() + "\n", force=True)
    return path


def run_args(emulator: RunningEmulator, directory: Path, *extra: str) -> list[str]:
    """`run` arguments against the in-process emulator, with files in `directory`."""
    return [
        "run",
        "--local",
        "--state-dir",
        str(emulator.emulator.options.state_dir),
        "--gateway",
        emulator.emulator.options.bind,
        "--secrets",
        str(directory / "secrets.json"),
        "--settings",
        str(directory / "settings.json"),
        "--interval",
        "0",
        *extra,
    ]


def secrets_in(text: str, *secrets: DeviceSecrets) -> list[str]:
    """Which group or device keys appear in `text` (the answer must be [])."""
    keys = [GROUP_PRIMARY, GROUP_SECONDARY, DISABLED_PRIMARY, DISABLED_SECONDARY]
    for device in secrets:
        keys += [device.primary_key, device.secondary_key]
    return [key for key in keys if key in text]


def settings_document(path: Path) -> dict[str, Any]:
    """settings.json as JSON."""
    document: dict[str, Any] = json.loads(path.read_text())
    return document


__all__ = [
    "CONFIG",
    "DPS_HOST",
    "GROUP",
    "HUBS",
    "ID_SCOPE",
    "device_secrets",
    "regenerate_group_key",
    "run_args",
    "secrets_in",
    "settings_document",
    "write_secrets",
]
