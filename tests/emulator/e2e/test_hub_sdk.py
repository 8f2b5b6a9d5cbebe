"""The real azure-iot-device IoTHubDeviceClient against the emulator over TLS on 127.42.1.1:8883."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.iot.device import Message, MethodResponse
from azure.iot.device.exceptions import CredentialError

from emulator.hub.messages import MethodResponse as HubMethodResponse
from tests.emulator.e2e.harness import (
    RunningEmulator,
    add_device,
    device_client,
    options,
    wait_for,
)

pytestmark = pytest.mark.e2e

BIND = "127.42.1.1"
HUB = "toasters.azure-devices.net"
KEY = "OSANXEslinwdWI7CugTZIIMS97VdG65m3pD753neq7E="
WRONG_KEY = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """One emulator for this module, on its own loopback address."""
    with RunningEmulator(options(tmp_path_factory.mktemp("hub"), BIND)) as running:
        yield running


def client_for(emulator: RunningEmulator, device_id: str, key: str = KEY) -> Any:
    return device_client(emulator, HUB, device_id, key)


class Inbox:
    """Collects what the SDK's handler threads receive."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, item: Any) -> None:
        with self._lock:
            self.items.append(item)

    def wait(self, count: int) -> list[Any]:
        wait_for(lambda: len(self.items) >= count)
        return self.items


def test_twin_telemetry_c2d_and_methods(emulator: RunningEmulator) -> None:
    """Twin get and reported patch, desired push, telemetry with properties, C2D and a method."""
    hub = add_device(emulator, HUB, "dev-001", KEY)
    client = client_for(emulator, "dev-001")
    desired, c2d = Inbox(), Inbox()
    client.on_twin_desired_properties_patch_received = desired
    client.on_message_received = c2d

    def on_method(request: Any) -> None:
        client.send_method_response(
            MethodResponse.create_from_method_request(request, 200, {"ok": request.payload})
        )

    client.on_method_request_received = on_method
    client.connect()
    try:
        twin = client.get_twin()
        assert twin["desired"]["$version"] == 1
        # The SDK's connect-time twin GET goes out before it ever subscribes to
        # $iothub/twin/res/#, so IoT Hub, and the emulator, drop its answer: no synthetic patch
        # on a device's first connection (hub-mqtt.md §5).
        assert desired.items == []
        client.patch_twin_reported_properties({"temperature": 22.5, "fw": {"version": "1.2.3"}})
        reported = emulator.call(lambda: hub.twin("dev-001"))
        assert reported is not None
        assert reported.reported == {"temperature": 22.5, "fw": {"version": "1.2.3"}}
        assert reported.reported_version == 2

        message = Message(
            "hello", message_id="msg-1", content_encoding="utf-8", content_type="application/json"
        )
        message.custom_properties = {"alert": "true", "sp ace&amp": "a/b c"}
        client.send_message(message)
        [logged] = emulator.call(lambda: hub.messages)
        assert logged.body == b"hello"
        assert logged.properties == {"alert": "true", "sp ace&amp": "a/b c"}
        assert logged.system_properties["$.mid"] == "msg-1"
        assert logged.system_properties["$.ct"] == "application/json"

        emulator.call(lambda: hub.update_desired("dev-001", {"fan": "high"}, now=time.time()))
        assert desired.wait(1)[0] == {"fan": "high", "$version": 2}

        emulator.call(
            lambda: hub.send_c2d(
                "dev-001",
                b'{"c2d":"hello"}',
                message_id="c2d-1",
                content_type="application/json",
                content_encoding="utf-8",
                properties={"color": "red blue", "flag": None},
            )
        )
        [received] = c2d.wait(1)
        assert received.data == b'{"c2d":"hello"}'
        assert received.message_id == "c2d-1"
        assert received.custom_properties == {"color": "red blue", "flag": None}

        responses = Inbox()
        emulator.call(
            lambda: hub.invoke_method("dev-001", "reboot", {"delay": 5}, on_response=responses)
        )
        assert responses.wait(1) == [HubMethodResponse(200, {"ok": {"delay": 5}})]
    finally:
        client.shutdown()
    wait_for(lambda: not emulator.call(lambda: hub.is_connected("dev-001")))


def test_reconnect_keeps_subscriptions(emulator: RunningEmulator) -> None:
    """After the server drops the connection the SDK reconnects without re-subscribing, and
    desired patches and C2D still arrive."""
    hub = add_device(emulator, HUB, "dev-002", KEY)
    client = client_for(emulator, "dev-002")
    desired, c2d = Inbox(), Inbox()
    client.on_twin_desired_properties_patch_received = desired
    client.on_message_received = c2d
    client.connect()
    try:
        wait_for(
            lambda: (
                emulator.call(lambda: hub.subscriptions("dev-002"))
                >= {
                    "$iothub/twin/PATCH/properties/desired/#",
                    "devices/dev-002/messages/devicebound/#",
                }
            )
        )
        assert emulator.call(lambda: hub.drop_connection("dev-002"))
        wait_for(lambda: emulator.call(lambda: hub.is_connected("dev-002")))
        emulator.call(lambda: hub.update_desired("dev-002", {"mode": "eco"}, now=time.time()))
        wait_for(lambda: {"mode": "eco", "$version": 2} in desired.items)
        emulator.call(lambda: hub.send_c2d("dev-002", b"after", message_id="m-2"))
        assert c2d.wait(1)[0].data == b"after"
    finally:
        client.shutdown()


def test_wrong_key_raises_credential_error(emulator: RunningEmulator) -> None:
    """A token signed with a key the hub does not hold gets CONNACK 5 -> CredentialError."""
    add_device(emulator, HUB, "dev-003", KEY)
    client = client_for(emulator, "dev-003", key=WRONG_KEY)
    try:
        with pytest.raises(CredentialError):
            client.connect()
    finally:
        client.shutdown()
