"""Operator commands, persistence and faults seen by the real device SDKs on 127.44.2.1:8883.

The commands run in-process (`emulator.__main__.main(argv)`) against the running emulator's
admin API, exactly as `python -m emulator <command>` would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.iot.device import Message
from azure.iot.device.exceptions import ConnectionFailedError, CredentialError

from emulator.__main__ import main
from sas import derive_device_key
from tests.emulator.e2e.harness import (
    RunningEmulator,
    add_device,
    device_client,
    emulator_toml,
    options,
    register,
    wait_for,
)

pytestmark = pytest.mark.e2e

BIND = "127.44.2.1"
HUB = "toasters.azure-devices.net"
PRIMARY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
SECONDARY = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
CONFIG = emulator_toml(
    hubs=[HUB],
    groups=[
        {
            "id": "contoso",
            "primary_key": PRIMARY,
            "secondary_key": SECONDARY,
            "allocation": "static",
            "hubs": [HUB],
        }
    ],
)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[RunningEmulator]:
    """A fresh emulator (state kept in memory) with one static group on one hub."""
    with RunningEmulator(options(tmp_path, BIND, CONFIG, service_port=0)) as running:
        yield running


def command(emulator: RunningEmulator, *argv: str) -> int:
    """Run `python -m emulator <argv>` against this emulator's state directory."""
    return main([*argv, "--state-dir", str(emulator.emulator.options.state_dir)])


def hub_device(emulator: RunningEmulator, device_id: str, key: str) -> Any:
    return device_client(emulator, HUB, device_id, key)


def test_regenerated_key_fails_old_derived_keys_while_the_other_slot_works(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """After regenerate-key --slot primary, primary-derived keys get CONNACK 5, secondary ones work."""
    assert command(emulator, "regenerate-key", "contoso", "--slot", "primary") == 0
    out = capsys.readouterr().out
    assert "regenerated the primary key of group enrollment 'contoso' (in memory only" in out
    new_primary = emulator.emulator.config.enrollment_groups[0].primary_key  # type: ignore[union-attr]
    assert new_primary != PRIMARY
    assert new_primary not in out  # printing a key needs --show-key
    with pytest.raises(CredentialError):
        register(emulator, "dev-old", derive_device_key(PRIMARY, "dev-old"))
    result = register(emulator, "dev-secondary", derive_device_key(SECONDARY, "dev-secondary"))
    assert (result.status, result.registration_state.assigned_hub) == ("assigned", HUB)

    assert command(emulator, "regenerate-key", "contoso", "--slot", "secondary", "--show-key") == 0
    shown = capsys.readouterr().out.splitlines()[-1]
    assert shown.startswith("secondary key: ")
    new_secondary = shown.removeprefix("secondary key: ")
    with pytest.raises(CredentialError):
        register(emulator, "dev-secondary", derive_device_key(SECONDARY, "dev-secondary"))
    result = register(emulator, "dev-new", derive_device_key(new_secondary, "dev-new"))
    assert result.status == "assigned"


def test_restart_with_state_dir_keeps_devices_twins_and_key_edits(tmp_path: Path) -> None:
    """Devices, twins, registrations and a regenerated key survive a restart with --state-dir."""
    settings = options(tmp_path, BIND, CONFIG, service_port=0, persist=True)
    device_key = derive_device_key(PRIMARY, "dev-001")
    with RunningEmulator(settings) as first:
        assert register(first, "dev-001", device_key).status == "assigned"
        client = hub_device(first, "dev-001", device_key)
        client.connect()
        client.patch_twin_reported_properties({"firmware": "1.2.3"})
        client.shutdown()
        assert command(first, "regenerate-key", "contoso", "--slot", "secondary") == 0
        regenerated = first.emulator.config.enrollment_groups[0].secondary_key  # type: ignore[union-attr]
    assert (settings.state_dir / "state.json").stat().st_mode & 0o077 == 0
    with RunningEmulator(settings) as second:
        client = hub_device(second, "dev-001", device_key)
        client.connect()
        twin = client.get_twin()
        client.shutdown()
        assert twin["reported"]["firmware"] == "1.2.3"
        assert second.emulator.dps.record("dev-001") is not None  # type: ignore[union-attr]
        with pytest.raises(CredentialError):
            register(second, "dev-002", derive_device_key(SECONDARY, "dev-002"))
        result = register(second, "dev-002", derive_device_key(regenerated, "dev-002"))
        assert result.status == "assigned"


def test_throttled_dps_is_retried_by_the_sdk(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """fault-set dps --throttle-requests 1: the SDK gets 429, retries after retry-after, is assigned."""
    assert command(emulator, "fault-set", "dps", "--throttle-requests", "1") == 0
    assert "faults on dps: throttle_requests=1" in capsys.readouterr().out
    result = register(emulator, "dev-429", derive_device_key(PRIMARY, "dev-429"))
    assert result.status == "assigned"
    faults = emulator.call(lambda: emulator.emulator.faults.describe(time.time()))  # type: ignore[union-attr]
    assert faults["dps"]["throttle_requests_left"] == 0  # the 429 was answered and used up


def test_dropped_connection_reconnects_with_subscriptions_intact(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """drop HUB closes the connection; the SDK reconnects and still gets desired patches."""
    hub = add_device(emulator, HUB, "dev-drop", PRIMARY)
    patches: list[dict[str, Any]] = []
    lock = threading.Lock()

    def on_patch(patch: dict[str, Any]) -> None:
        with lock:
            patches.append(patch)

    client = hub_device(emulator, "dev-drop", PRIMARY)
    client.on_twin_desired_properties_patch_received = on_patch
    client.connect()
    try:
        wait_for(lambda: len(emulator.call(lambda: hub.subscriptions("dev-drop"))) > 0)
        before = emulator.call(lambda: hub.subscriptions("dev-drop"))
        assert command(emulator, "drop", HUB, "--client-id", "dev-drop") == 0
        assert "dropped 1 connection(s)" in capsys.readouterr().out
        wait_for(lambda: emulator.call(lambda: hub.is_connected("dev-drop")))
        assert emulator.call(lambda: hub.subscriptions("dev-drop")) == before
        emulator.call(lambda: hub.update_desired("dev-drop", {"fan": "high"}, now=time.time()))
        wait_for(lambda: any(patch.get("fan") == "high" for patch in patches))
        client.send_message(Message("after the drop"))
        assert command(emulator, "tail", HUB, "--from-start", "--count", "1", "--timeout", "5") == 0
        assert "dev-drop: after the drop" in capsys.readouterr().out
    finally:
        client.shutdown()


def test_refused_connections_raise_connection_failed(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """refuse_connects answers CONNACK 3: the hub and DPS clients raise ConnectionFailedError."""
    hub = add_device(emulator, HUB, "dev-refused", PRIMARY)
    assert command(emulator, "fault-set", HUB, "--refuse-connects", "1") == 0
    assert command(emulator, "fault-set", "dps", "--refuse-connects", "1") == 0
    client = hub_device(emulator, "dev-refused", PRIMARY)
    try:
        with pytest.raises(ConnectionFailedError):
            client.connect()
        with pytest.raises(ConnectionFailedError):
            register(emulator, "dev-refused", derive_device_key(PRIMARY, "dev-refused"))
        client.connect()  # the one refusal is used up
        assert emulator.call(lambda: hub.is_connected("dev-refused"))
    finally:
        client.shutdown()
    assert command(emulator, "fault-clear", HUB) == 0
    capsys.readouterr()
    assert command(emulator, "faults") == 0
    listed = capsys.readouterr().out
    assert HUB not in listed
    assert listed.startswith("dps: refuse_connects=1")
