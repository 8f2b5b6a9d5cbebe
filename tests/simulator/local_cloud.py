"""What the simulator's end-to-end tests share: the emulator config, derived secrets, key rolls.

Each test module binds its own 127.45.<n>.1 (the SDK's MQTT port is fixed at 8883) and runs the
emulator in-process with tests/emulator/e2e/harness.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simulator.secrets_file import DeviceSecrets, derive_secrets, write_secret_file
from tests.emulator.e2e.harness import RunningEmulator

DPS_HOST = "global.azure-devices-provisioning.net"
ID_SCOPE = "0ne00000001"
GROUP = "factory"
GROUP_PRIMARY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
GROUP_SECONDARY = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
DISABLED_PRIMARY = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
DISABLED_SECONDARY = "BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ="
HUBS = ("toasters.azure-devices.net", "heatpumps.azure-devices.net")

CONFIG = f"""
[dps]
id_scope = "{ID_SCOPE}"
host = "{DPS_HOST}"

[[hubs]]
name = "{HUBS[0]}"

[[hubs]]
name = "{HUBS[1]}"

[[enrollment_groups]]
id = "{GROUP}"
primary_key = "{GROUP_PRIMARY}"
secondary_key = "{GROUP_SECONDARY}"
allocation = "hashed"
initial_twin = {{ desired = {{ state = "ready" }} }}

[[individual_enrollments]]
registration_id = "switched-off-001"
device_id = "switched-off-001"
primary_key = "{DISABLED_PRIMARY}"
secondary_key = "{DISABLED_SECONDARY}"
enabled = false
"""


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


def regenerate_group_key(emulator: RunningEmulator, group: str, slot: str) -> str:
    """Give the group a new primary or secondary key, as an operator would, and return it.

    Runs `python -m emulator regenerate-key GROUP --slot SLOT --show-key --json` in-process: the
    operator command, through the running emulator's admin API (found via its state directory).
    """
    from contextlib import redirect_stdout  # noqa: PLC0415
    from io import StringIO  # noqa: PLC0415

    from emulator.__main__ import main as emulator_main  # noqa: PLC0415

    state_dir = str(emulator.emulator.options.state_dir)
    answer = StringIO()  # kept out of pytest's captured output: it holds the new key
    with redirect_stdout(answer):
        code = emulator_main(
            [
                "regenerate-key",
                group,
                "--slot",
                slot,
                "--show-key",
                "--json",
                "--state-dir",
                state_dir,
            ]
        )
    assert code == 0, "regenerate-key failed"
    key: str = json.loads(answer.getvalue())["key"]
    return key


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
