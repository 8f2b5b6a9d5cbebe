"""Lifecycle events from the emulated hub, received by the emulator's Functions host and applied by
`device_lifecycle` into Azurite (127.43.2.1).

Connection events are reported `immediate`ly here (IoT Hub's 60 s snapshots would make the test
wait a minute per step; tests/emulator/hub/test_device_events.py covers the snapshots)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from azure.iot.device import Message
from azure.iot.hub import IoTHubRegistryManager

from store.records import ConnectionState, HubIdentity
from store.runtime import Runtime, build_runtime, set_runtime
from store.settings import StoreSettings
from tests.azurite import Azurite, fresh_prefix
from tests.emulator.e2e.harness import (
    RunningEmulator,
    device_client,
    emulator_toml,
    options,
    wait_for,
)

pytestmark = pytest.mark.e2e

BIND = "127.43.2.1"
HUB = "toasters.azure-devices.net"
EVENTS = 15  # seconds: each event goes hub -> delivery -> Functions host -> Azurite


@pytest.fixture(scope="module")
def runtime(azurite: Azurite) -> Iterator[Runtime]:
    """The Functions app's runtime on the session's Azurite (tables under a unique prefix)."""
    settings = StoreSettings(
        connection_string=azurite.connection_string,
        table_prefix=fresh_prefix(),
        timeout_seconds=5,
    )
    built = build_runtime(settings)
    set_runtime(built)
    try:
        yield built
    finally:
        set_runtime(None)


@pytest.fixture(scope="module")
def emulator(
    tmp_path_factory: pytest.TempPathFactory, runtime: Runtime
) -> Iterator[RunningEmulator]:
    """The emulator hosting function_app; lifecycle events go to its device_lifecycle trigger."""
    run_options = options(
        tmp_path_factory.mktemp("life"),
        BIND,
        emulator_toml(events={"connection_events": "immediate"}),
        host_functions=True,
        functions_bind=BIND,
        functions_port=0,
    )
    with RunningEmulator(run_options) as running:
        yield running


def test_created_connected_disconnected_deleted_land_in_the_inventory(
    emulator: RunningEmulator, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each lifecycle event reaches device_lifecycle and moves the Azurite inventory row."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.emulator.ca_path))
    strings = json.loads((emulator.emulator.options.state_dir / "hubs.json").read_text())
    registry = IoTHubRegistryManager.from_connection_string(strings[HUB])
    device = registry.create_device_with_sas("life-1", "", "", "enabled")
    store = runtime.store

    def row() -> Any:
        return store.get_device("life-1")

    wait_for(
        lambda: row() is not None and row().hub_identity is HubIdentity.PRESENT, timeout=EVENTS
    )
    assert row().hub == "toasters"
    client = device_client(emulator, HUB, "life-1", device.authentication.symmetric_key.primary_key)
    client.connect()
    client.send_message(Message("hello"))  # IoT Hub counts a device connected from here on
    wait_for(lambda: row().connection_state is ConnectionState.CONNECTED, timeout=EVENTS)
    connected_sequence = row().last_sequence_number
    client.shutdown()
    wait_for(lambda: row().connection_state is ConnectionState.DISCONNECTED, timeout=EVENTS)
    assert row().last_sequence_number > connected_sequence
    registry.delete_device("life-1")
    wait_for(lambda: row().hub_identity is HubIdentity.DELETED, timeout=EVENTS)
    delivery = emulator.emulator.delivery
    assert delivery is not None
    assert delivery.delivered >= 4
    assert delivery.dropped == 0
