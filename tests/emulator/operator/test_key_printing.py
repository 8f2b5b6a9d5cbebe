"""Printing a key needs an explicit flag: every operator command, plain and `--json`, against a
running emulator on 127.46.6.1; only `regenerate-key --show-key` prints the new key."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.__main__ import main
from tests.emulator.e2e.harness import RunningEmulator, emulator_toml, options

BIND = "127.46.6.1"
HUB = "toasters.azure-devices.net"
GROUP_PRIMARY = "EBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBA="
GROUP_SECONDARY = "EREREREREREREREREREREREREREREREREREREREREEE="
SOLO_PRIMARY = "EhISEhISEhISEhISEhISEhISEhISEhISEhISEhISEhI="
SOLO_SECONDARY = "ExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExM="
DEVICE_KEY = "FBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQ="
CONFIG = emulator_toml(
    hubs=[HUB],
    groups=[
        {
            "id": "contoso",
            "primary_key": GROUP_PRIMARY,
            "secondary_key": GROUP_SECONDARY,
            "allocation": "static",
            "hubs": [HUB],
        }
    ],
    individuals=[
        {
            "registration_id": "dev-solo",
            "primary_key": SOLO_PRIMARY,
            "secondary_key": SOLO_SECONDARY,
            "allocation": "static",
            "hubs": [HUB],
        }
    ],
)
READ_COMMANDS = (
    ("status",),
    ("enrollments",),
    ("registrations",),
    ("devices", HUB),
    ("show-device", HUB, "dev-1"),
    ("faults",),
)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[RunningEmulator]:
    """An emulator with a group, an individual enrollment and one device holding a key."""
    run_options = options(tmp_path, BIND, CONFIG, mqtt_port=0, service_port=0)
    with RunningEmulator(run_options) as running:
        hub = running.emulator.hub(HUB)
        running.call(
            lambda: hub.upsert_device(
                "dev-1",
                primary_key=DEVICE_KEY,
                secondary_key=DEVICE_KEY,
                twin=None,
                now=time.time(),
            )
        )
        running.call(lambda: hub.send_c2d("dev-1", b"queued", message_id="m-1"))
        yield running


def command(emulator: RunningEmulator, *argv: str) -> int:
    return main([*argv, "--state-dir", str(emulator.emulator.options.state_dir)])


def secrets_of(emulator: RunningEmulator) -> dict[str, str]:
    """Every key the emulator holds now, and the admin token (label -> value)."""
    config = emulator.emulator.config
    assert config is not None
    found = {"admin token": (emulator.emulator.options.state_dir / "admin-token").read_text()}
    for group in config.enrollment_groups:
        found[f"{group.id} primary"] = group.primary_key
        found[f"{group.id} secondary"] = group.secondary_key
    for solo in config.individual_enrollments:
        found[f"{solo.registration_id} primary"] = solo.primary_key
        found[f"{solo.registration_id} secondary"] = solo.secondary_key
    found["device key"] = DEVICE_KEY
    return {label: value.strip() for label, value in found.items()}


def printed(text: str, secrets: dict[str, str]) -> list[str]:
    return [label for label, value in secrets.items() if value in text]


def test_no_read_command_prints_a_key_plain_or_json(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """status, enrollments, registrations, devices, show-device, faults: no key, either form."""
    outputs = []
    for argv in READ_COMMANDS:
        for form in ((), ("--json",)):
            assert command(emulator, *argv, *form) == 0, argv
            out, err = capsys.readouterr()
            outputs.append(out + err)
    assert all(outputs)
    json.loads(outputs[3])  # enrollments --json is the API's answer
    assert printed("\n".join(outputs), secrets_of(emulator)) == []


@pytest.mark.parametrize("slot", ["primary", "secondary"])
@pytest.mark.parametrize("individual", [False, True], ids=["group", "individual"])
def test_regenerated_key_is_printed_only_with_show_key(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], slot: str, individual: bool
) -> None:
    """regenerate-key (plain or --json) prints no key; with --show-key it prints the new one."""
    target = ["dev-solo", "--individual"] if individual else ["contoso"]
    for form in ((), ("--json",)):
        assert command(emulator, "regenerate-key", *target, "--slot", slot, *form) == 0
        out, err = capsys.readouterr()
        assert out
        assert printed(out + err, secrets_of(emulator)) == []
    assert command(emulator, "regenerate-key", *target, "--slot", slot, "--show-key", "--json") == 0
    shown = json.loads(capsys.readouterr().out)["key"]
    held = secrets_of(emulator)[f"{target[0]} {slot}"]
    assert shown == held
