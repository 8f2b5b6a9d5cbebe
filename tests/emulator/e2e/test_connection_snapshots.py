"""Connection events as IoT Hub sends them, end to end on 127.51.3.1: snapshots (here of 1 s, IoT
Hub's are 60 s) posted to an Event Grid endpoint, and only for devices that subscribed to C2D or
sent telemetry, with the real azure-iot-device SDK."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.iot.device import Message

from tests.emulator.e2e.harness import (
    RunningEmulator,
    add_device,
    device_client,
    emulator_toml,
    options,
    wait_for,
)
from tests.scripted_webhook import ScriptedWebhook

pytestmark = pytest.mark.e2e

BIND = "127.51.3.1"
HUB = "toasters.azure-devices.net"
KEY = "OSANXEslinwdWI7CugTZIIMS97VdG65m3pD753neq7E="
CONNECTION = ("Microsoft.Devices.DeviceConnected", "Microsoft.Devices.DeviceDisconnected")


@pytest.fixture(scope="module")
def events() -> Iterator[ScriptedWebhook]:
    """The Event Grid subscriber: answers the validation handshake, accepts every event."""
    with ScriptedWebhook(bind=BIND, by_path={"/events": [(200, None)]}, validates=True) as receiver:
        yield receiver


@pytest.fixture(scope="module")
def emulator(
    tmp_path_factory: pytest.TempPathFactory, events: ScriptedWebhook
) -> Iterator[RunningEmulator]:
    """The emulator with 1 s connection snapshots, posting its events to `events`."""
    toml = emulator_toml(
        events={
            "url": events.url_for("/events"),
            "connection_events": "snapshot",
            "snapshot_interval": 1,
        }
    )
    with RunningEmulator(options(tmp_path_factory.mktemp("snapshots"), BIND, toml)) as running:
        yield running


def connection_events(events: ScriptedWebhook) -> list[dict[str, Any]]:
    """The connection events received so far (each POST carries a one-event array)."""
    return [
        event
        for body in events.requests
        for event in body
        if isinstance(body, list) and event["eventType"] in CONNECTION
    ]


def test_only_a_device_that_sent_telemetry_is_reported_and_at_snapshot_times(
    emulator: RunningEmulator, events: ScriptedWebhook
) -> None:
    """A device that only connects (twin, methods) is never reported; one that sends telemetry
    is reported Connected, then Disconnected, each at a snapshot time (whole seconds here) with
    a growing sequence number."""
    for device_id in ("quiet-1", "talker-1"):
        add_device(emulator, HUB, device_id, KEY)
    quiet = device_client(emulator, HUB, "quiet-1", KEY)
    quiet.on_method_request_received = lambda request: None  # connects, subscribes to methods
    talker = device_client(emulator, HUB, "talker-1", KEY)
    talker.connect()
    try:
        talker.send_message(Message("counted from here"))
        wait_for(lambda: len(connection_events(events)) >= 1)
        talker.disconnect()
        wait_for(lambda: len(connection_events(events)) >= 2)
    finally:
        quiet.shutdown()
        talker.shutdown()
    connected, disconnected = connection_events(events)[:2]
    assert [event["subject"] for event in (connected, disconnected)] == ["devices/talker-1"] * 2
    assert connected["eventType"] == "Microsoft.Devices.DeviceConnected"
    assert disconnected["eventType"] == "Microsoft.Devices.DeviceDisconnected"
    assert all(event["eventTime"].endswith(".0000000Z") for event in (connected, disconnected))
    sequence = "deviceConnectionStateEventInfo"
    assert (
        disconnected["data"][sequence]["sequenceNumber"]
        > (connected["data"][sequence]["sequenceNumber"])
    )
    assert "devices/quiet-1" not in {event["subject"] for event in connection_events(events)}
