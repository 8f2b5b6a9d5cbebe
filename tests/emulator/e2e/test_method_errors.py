"""Direct method failures as azure-iot-hub's `invoke_device_method` sees them, against the
emulator over TLS on 127.51.2.1: IoT Hub's 404103 and 504101 bodies, and `connectTimeoutInSeconds`
waiting for a device that comes online meanwhile."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.iot.device import MethodResponse
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod
from msrest.exceptions import HttpOperationError

from tests.emulator.e2e.harness import RunningEmulator, device_client, options

pytestmark = pytest.mark.e2e

BIND = "127.51.2.1"
HUB = "toasters.azure-devices.net"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """One emulator for this module, service API on 127.51.2.1:8443."""
    with RunningEmulator(options(tmp_path_factory.mktemp("methods"), BIND)) as running:
        yield running


@pytest.fixture
def registry(emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> IoTHubRegistryManager:
    """A registry manager for the toasters hub, trusting the emulator's CA for this test."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.emulator.ca_path))
    strings = json.loads((emulator.emulator.options.state_dir / "hubs.json").read_text())
    return IoTHubRegistryManager.from_connection_string(strings[HUB])


def method_error(call: Any) -> tuple[int, str, dict[str, Any]]:
    """Status, `iothub-errorcode` and the JSON document inside `Message` of a failed call."""
    with pytest.raises(HttpOperationError) as caught:
        call()
    response = caught.value.response
    body = response.json()
    assert body["ExceptionMessage"] == ""
    return response.status_code, response.headers["iothub-errorcode"], json.loads(body["Message"])


def request(**timeouts: int) -> CloudToDeviceMethod:
    return CloudToDeviceMethod(method_name="reboot", payload={"delay": 1}, **timeouts)


def answering(emulator: RunningEmulator, device_id: str, key: str, status: int | None) -> Any:
    """A connected SDK device subscribed to methods; it answers `status`, or never (None)."""
    client = device_client(emulator, HUB, device_id, key)

    def on_method(method: Any) -> None:
        if status is not None:
            client.send_method_response(
                MethodResponse.create_from_method_request(method, status, {"got": method.name})
            )

    client.on_method_request_received = on_method  # connects and subscribes
    return client


def test_an_offline_or_unsubscribed_device_is_404103(
    emulator: RunningEmulator, registry: IoTHubRegistryManager
) -> None:
    """404 DeviceNotOnline with errorCode 404103 and `info`, offline or connected without a
    method handler; a device that does not exist stays 404 DeviceNotFound."""
    device = registry.create_device_with_sas("offline-1", "", "", "enabled")
    status, code, detail = method_error(
        lambda: registry.invoke_device_method("offline-1", request(response_timeout_in_seconds=5))
    )
    assert (status, code, detail["errorCode"]) == (404, "DeviceNotOnline", 404103)
    assert set(detail) >= {"trackingId", "message", "info", "timestampUtc"}
    client = device_client(
        emulator, HUB, "offline-1", device.authentication.symmetric_key.primary_key
    )
    client.connect()
    try:
        status, code, detail = method_error(
            lambda: registry.invoke_device_method("offline-1", request())
        )
        assert (status, detail["errorCode"]) == (404, 404103)
    finally:
        client.shutdown()
    with pytest.raises(HttpOperationError) as missing:
        registry.invoke_device_method("nobody-here", request())
    assert missing.value.response.headers["iothub-errorcode"] == "DeviceNotFound"


def test_connect_timeout_waits_for_the_device_to_come_online(
    emulator: RunningEmulator, registry: IoTHubRegistryManager
) -> None:
    """With connectTimeoutInSeconds the call waits for a device that connects and subscribes
    meanwhile, and gets its answer; without a device it fails 404103 once that time is up."""
    device = registry.create_device_with_sas("late-1", "", "", "enabled")
    key = device.authentication.symmetric_key.primary_key
    clients: list[Any] = []
    later = threading.Timer(1.0, lambda: clients.append(answering(emulator, "late-1", key, 200)))
    later.start()
    try:
        result = registry.invoke_device_method(
            "late-1", request(response_timeout_in_seconds=5, connect_timeout_in_seconds=30)
        )
        assert (result.status, result.payload) == (200, {"got": "reboot"})
    finally:
        later.join()
        for client in clients:
            client.shutdown()
    registry.create_device_with_sas("never-1", "", "", "enabled")
    started = time.monotonic()
    status, _, detail = method_error(
        lambda: registry.invoke_device_method("never-1", request(connect_timeout_in_seconds=1))
    )
    assert (status, detail["errorCode"]) == (404, 404103)
    assert time.monotonic() - started >= 1  # it waited for the device first


def test_a_device_that_does_not_answer_is_504101(
    emulator: RunningEmulator, registry: IoTHubRegistryManager
) -> None:
    """A subscribed device that never answers: 504 GatewayTimeout, errorCode 504101, after the
    response timeout (5 s, the least IoT Hub takes)."""
    device = registry.create_device_with_sas("silent-1", "", "", "enabled")
    client = answering(emulator, "silent-1", device.authentication.symmetric_key.primary_key, None)
    try:
        status, code, detail = method_error(
            lambda: registry.invoke_device_method(
                "silent-1", request(response_timeout_in_seconds=5)
            )
        )
        assert (status, code, detail["errorCode"]) == (504, "GatewayTimeout", 504101)
        assert detail["message"] == "Timed out waiting for the response from device."
    finally:
        client.shutdown()
