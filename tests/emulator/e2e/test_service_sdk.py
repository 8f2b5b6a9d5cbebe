"""The real azure-iot-hub IoTHubRegistryManager against the emulator's service API over TLS (127.43.1.1)."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.iot.device import MethodResponse as DeviceMethodResponse
from azure.iot.device.exceptions import CredentialError
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod, QuerySpecification, Twin, TwinProperties
from msrest.exceptions import HttpOperationError

from store.memory import MemoryStore
from store.records import DeviceRecord
from store.retire import RegistryManagerHub, retire
from tests.emulator.e2e.harness import (
    RunningEmulator,
    device_client,
    options,
    service_connection_strings,
    wait_for,
)

pytestmark = pytest.mark.e2e

BIND = "127.43.1.1"
HUB = "toasters.azure-devices.net"
OTHER_HUB = "heatpumps.azure-devices.net"
WRONG_KEY = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """One emulator for this module, service API on 127.43.1.1:8443 (toasters) and :8444."""
    with RunningEmulator(options(tmp_path_factory.mktemp("service"), BIND)) as running:
        yield running


@pytest.fixture
def trust(emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """requests (inside msrest) trusts the emulator's CA for this test only."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.emulator.ca_path))


@pytest.fixture
def registry(emulator: RunningEmulator, trust: None) -> IoTHubRegistryManager:
    """A registry manager for the toasters hub, from hubs.json."""
    return IoTHubRegistryManager.from_connection_string(service_connection_strings(emulator)[HUB])


def status_of(call: Any) -> tuple[int, str]:
    with pytest.raises(HttpOperationError) as caught:
        call()
    response = caught.value.response
    return response.status_code, response.headers.get("iothub-errorcode", "")


def hub_device(emulator: RunningEmulator, device_id: str, key: str) -> Any:
    return device_client(emulator, HUB, device_id, key)


def test_hubs_json_lists_every_hub_privately(emulator: RunningEmulator) -> None:
    """hubs.json is 0600 and maps each hub to HostName=<bind>:<port> with the iothubowner policy."""
    path = emulator.emulator.options.state_dir / "hubs.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    strings = service_connection_strings(emulator)
    assert strings[HUB].startswith(f"HostName={BIND}:8443;SharedAccessKeyName=iothubowner;")
    assert strings[OTHER_HUB].startswith(f"HostName={BIND}:8444;")


def test_device_crud_with_etags(registry: IoTHubRegistryManager) -> None:
    """Create (keys generated), 409 on re-create, 412 on a stale etag, update, list, delete 204, 404."""
    created = registry.create_device_with_sas("crud-1", "", "", "enabled")
    assert created.device_id == "crud-1"
    assert created.status == "enabled"
    assert len(created.authentication.symmetric_key.primary_key) == 44
    assert created.authentication.symmetric_key.primary_key != (
        created.authentication.symmetric_key.secondary_key
    )
    assert status_of(lambda: registry.create_device_with_sas("crud-1", "", "", "enabled")) == (
        409,
        "DeviceAlreadyExists",
    )
    assert status_of(
        lambda: registry.update_device_with_sas("crud-1", "stale", "", "", "disabled")
    ) == (412, "PreconditionFailed")
    updated = registry.update_device_with_sas("crud-1", created.etag, "", "", "disabled")
    assert updated.status == "disabled"
    assert updated.etag != created.etag
    assert registry.get_device("crud-1").status == "disabled"
    assert "crud-1" in [device.device_id for device in registry.get_devices()]
    assert status_of(lambda: registry.delete_device("crud-1", etag=created.etag)) == (
        412,
        "PreconditionFailed",
    )
    registry.delete_device("crud-1")
    assert status_of(lambda: registry.get_device("crud-1")) == (404, "DeviceNotFound")
    assert status_of(lambda: registry.delete_device("crud-1")) == (404, "DeviceNotFound")


def test_twin_get_update_replace_and_desired_patch_reaches_device(
    emulator: RunningEmulator, registry: IoTHubRegistryManager
) -> None:
    """Twin versions and etags move; a stale etag is 412; a desired update reaches the device."""
    device = registry.create_device_with_sas("twin-1", "", "", "enabled")
    twin = registry.get_twin("twin-1")
    assert (twin.version, twin.etag) == (2, "AAAAAAAAAAE=")
    assert twin.properties.desired["$version"] == 1
    client = hub_device(emulator, "twin-1", device.authentication.symmetric_key.primary_key)
    patches: list[dict[str, Any]] = []
    client.on_twin_desired_properties_patch_received = patches.append
    client.connect()  # subscribed to desired patches by the time the handler was set
    try:
        patched = registry.update_twin(
            "twin-1",
            Twin(tags={"site": "lab"}, properties=TwinProperties(desired={"fan": "high"})),
            twin.etag,
        )
        assert patched.properties.desired["fan"] == "high"
        assert patched.tags == {"site": "lab"}
        assert patched.etag != twin.etag
        wait_for(lambda: len(patches) == 1)
        assert patches[0]["fan"] == "high"
        assert status_of(
            lambda: registry.update_twin(
                "twin-1", Twin(properties=TwinProperties(desired={"x": 1})), twin.etag
            )
        ) == (412, "PreconditionFailed")
        replaced = registry.replace_twin(
            "twin-1", Twin(tags={"floor": 2}, properties=TwinProperties(desired={"mode": "eco"}))
        )
        assert replaced.tags == {"floor": 2}
        assert "fan" not in replaced.properties.desired
        assert replaced.properties.desired["mode"] == "eco"
        wait_for(lambda: len(patches) == 2)
        assert patches[1]["mode"] == "eco"
        assert patches[1]["$version"] == replaced.properties.desired["$version"]
    finally:
        client.shutdown()
    assert status_of(lambda: registry.get_twin("nobody")) == (404, "DeviceNotFound")


def test_query_pages_with_continuation(registry: IoTHubRegistryManager) -> None:
    """SELECT * FROM devices pages by max_item_count; the last page has no continuation token."""
    for index in range(5):
        registry.create_device_with_sas(f"q-{index}", "", "", "enabled")
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        result = registry.query_iot_hub(QuerySpecification(query="SELECT * FROM devices"), token, 2)
        pages += 1
        assert result.type == "twin"
        assert len(result.items) <= 2
        seen.extend(item.device_id for item in result.items)
        token = result.continuation_token
        if token is None:
            break
    assert [d for d in seen if d.startswith("q-")] == [f"q-{index}" for index in range(5)]
    assert pages == (len(seen) + 1) // 2
    assert status_of(
        lambda: registry.query_iot_hub(QuerySpecification(query="SELECT deviceId FROM jobs"))
    ) == (400, "ArgumentInvalid")


def test_statistics_and_direct_method(
    emulator: RunningEmulator, registry: IoTHubRegistryManager
) -> None:
    """Registry and service statistics count devices; a direct method reaches a connected device."""
    device = registry.create_device_with_sas("method-1", "", "", "enabled")
    registry.create_device_with_sas("method-off", "", "", "disabled")
    stats = registry.get_device_registry_statistics()
    assert stats.total_device_count == stats.enabled_device_count + stats.disabled_device_count
    assert stats.disabled_device_count >= 1
    request = CloudToDeviceMethod(
        method_name="reboot", payload={"delay": 1}, response_timeout_in_seconds=5
    )
    assert status_of(lambda: registry.invoke_device_method("method-1", request)) == (
        404,
        "DeviceNotOnline",
    )
    client = hub_device(emulator, "method-1", device.authentication.symmetric_key.primary_key)

    def on_method(method: Any) -> None:
        client.send_method_response(
            DeviceMethodResponse.create_from_method_request(method, 201, {"got": method.payload})
        )

    client.on_method_request_received = on_method
    client.connect()
    try:
        assert registry.get_service_statistics().connected_device_count >= 1
        result = registry.invoke_device_method("method-1", request)
        assert result.status == 201
        assert result.payload == {"got": {"delay": 1}}
    finally:
        client.shutdown()


def test_retire_disables_device_and_refuses_next_connect(
    emulator: RunningEmulator, registry: IoTHubRegistryManager
) -> None:
    """store.retire through RegistryManagerHub disables the device: dropped now, refused next time."""
    device = registry.create_device_with_sas("retire-1", "", "", "enabled")
    key = device.authentication.symmetric_key.primary_key
    client = hub_device(emulator, "retire-1", key)
    client.connect()
    hub = emulator.emulator.hub(HUB)
    assert emulator.call(lambda: hub.is_connected("retire-1"))
    store = MemoryStore()
    store.update_device(
        "retire-1",
        lambda _: DeviceRecord(registration_id="retire-1", device_id="retire-1", hub=HUB),
    )
    strings = service_connection_strings(emulator)
    result = retire(
        store,
        "retire-1",
        reason="stolen",
        now=datetime.now(UTC),
        hubs=lambda name: RegistryManagerHub.from_connection_string(strings[name]),
    )
    assert result.hub_touched, result.message
    assert registry.get_device("retire-1").status == "disabled"
    wait_for(lambda: not emulator.call(lambda: hub.is_connected("retire-1")))
    client.shutdown()
    again = hub_device(emulator, "retire-1", key)
    with pytest.raises(CredentialError):
        again.connect()
    again.shutdown()


def test_wrong_key_is_401_and_host_header_picks_the_hub(
    emulator: RunningEmulator, trust: None
) -> None:
    """A wrong policy key answers 401; the other hub's port serves the other hub's registry."""
    strings = service_connection_strings(emulator)
    wrong = strings[HUB].rsplit("SharedAccessKey=", 1)[0] + f"SharedAccessKey={WRONG_KEY}"
    bad = IoTHubRegistryManager.from_connection_string(wrong)
    assert status_of(bad.get_device_registry_statistics) == (
        401,
        "IotHubUnauthorizedAccess",
    )
    other = IoTHubRegistryManager.from_connection_string(strings[OTHER_HUB])
    other.create_device_with_sas("only-on-heatpumps", "", "", "enabled")
    assert emulator.call(lambda: emulator.emulator.hub(OTHER_HUB).device("only-on-heatpumps"))
    assert emulator.call(lambda: emulator.emulator.hub(HUB).device("only-on-heatpumps")) is None


def raw_exchange(emulator: RunningEmulator, data: bytes) -> bytes:
    context = ssl.create_default_context(cafile=str(emulator.emulator.ca_path))
    with (
        socket.create_connection((BIND, 8443), timeout=5) as plain,
        context.wrap_socket(plain, server_hostname=BIND) as tls,
    ):
        tls.sendall(data)
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_malformed_requests_get_errors_and_server_keeps_serving(
    emulator: RunningEmulator, registry: IoTHubRegistryManager
) -> None:
    """Not HTTP -> 400 and closed; an oversized body or header section -> 413 / 431 with IoT Hub's
    semicolon body; the SDK still works afterwards."""
    garbage = raw_exchange(emulator, b"NOT HTTP AT ALL\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400 ")
    big = raw_exchange(
        emulator,
        b"PUT /devices/x?api-version=2021-04-12 HTTP/1.1\r\nHost: h\r\n"
        b"Content-Length: 99999999\r\n\r\n",
    )
    assert big.startswith(b"HTTP/1.1 413 ")
    assert b"iothub-errorcode: MessageTooLarge" in big
    assert b'"Message": "ErrorCode:MessageTooLarge;' in big
    huge_headers = raw_exchange(
        emulator,
        b"GET /statistics/devices?api-version=2021-04-12 HTTP/1.1\r\nHost: h\r\n"
        + b"".join(b"X-Filler-%d: %s\r\n" % (n, b"y" * 1000) for n in range(20))
        + b"\r\n",
    )
    assert huge_headers.startswith(b"HTTP/1.1 431 ")
    assert b"iothub-errorcode: HeadersTooLarge" in huge_headers
    no_auth = raw_exchange(
        emulator,
        b"GET /statistics/devices?api-version=2021-04-12 HTTP/1.1\r\nHost: h\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert no_auth.startswith(b"HTTP/1.1 401 ")
    threads = [
        threading.Thread(target=raw_exchange, args=(emulator, b"\x16\x03garbage\r\n\r\n"))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert registry.get_device_registry_statistics().total_device_count >= 0
