"""The HTTPS port (443) with clients nobody here wrote, over TLS with the emulator's CA, on
127.53.0.1: the Python device SDK with `websockets=True` (DPS, then its hub: twin, telemetry,
C2D), the Node.js SDKs over HTTPS and over MQTT/WebSockets (provision, telemetry, C2D), and
DPS's REST API as curl sends it (httpx with the same headers)."""

from __future__ import annotations

import json
import os
import queue
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.iot.device import IoTHubDeviceClient, Message, ProvisioningDeviceClient

from sas import derive_device_key, generate_sas_token
from tests.emulator.e2e.harness import (
    DPS_HOST,
    HEATPUMPS,
    ID_SCOPE,
    TOASTERS,
    RunningEmulator,
    add_device,
    emulator_toml,
    options,
    wait_for,
)
from tests.scripted_webhook import ScriptedWebhook

pytestmark = pytest.mark.e2e

BIND = "127.53.0.1"
STATIC_KEY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
CUSTOM_KEY = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
NODE = Path(__file__).resolve().parents[2] / "node"
NODE_DEVICE = NODE / "device.js"


@pytest.fixture(scope="module")
def webhook() -> Iterator[ScriptedWebhook]:
    """A custom-allocation webhook that sends every device to the heat pumps with a payload."""
    with ScriptedWebhook(BIND, key="k") as server:
        reply = {"iotHubHostName": HEATPUMPS, "payload": {"welcome": "over websockets"}}
        server.by_path["/api/allocate"] = [(200, reply)]
        yield server


@pytest.fixture(scope="module")
def emulator(
    tmp_path_factory: pytest.TempPathFactory, webhook: ScriptedWebhook
) -> Iterator[RunningEmulator]:
    """One emulator for the module: a static group (toasters) and a custom one (webhook)."""
    toml = emulator_toml(
        groups=[
            {
                "id": "static",
                "primary_key": STATIC_KEY,
                "secondary_key": STATIC_KEY,
                "allocation": "static",
                "hubs": [TOASTERS],
                "initial_twin": {"desired": {"mode": "eco"}},
            },
            {
                "id": "custom",
                "primary_key": CUSTOM_KEY,
                "secondary_key": CUSTOM_KEY,
                "allocation": "custom",
                "webhook_url": webhook.url,
            },
        ]
    )
    with RunningEmulator(options(tmp_path_factory.mktemp("transports"), BIND, toml)) as running:
        assert running.emulator.https is not None
        assert running.emulator.https.port == 443
        yield running


def hub_messages(emulator: RunningEmulator, hub: str, device_id: str) -> list[Any]:
    messages = emulator.call(lambda: emulator.emulator.hub(hub).messages)
    return [message for message in messages if message.device_id == device_id]


def test_python_sdk_over_websockets_provisions_and_uses_its_hub(
    emulator: RunningEmulator, webhook: ScriptedWebhook
) -> None:
    """`websockets=True` (wss://<gateway_hostname>:443/$iothub/websocket): DPS assigns through
    the webhook and returns its payload; on the hub the device reads its twin, reports, sends
    telemetry and receives a C2D message, all over WebSockets."""
    key = derive_device_key(CUSTOM_KEY, "ws-py-1")
    provisioning = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=DPS_HOST,
        registration_id="ws-py-1",
        id_scope=ID_SCOPE,
        symmetric_key=key,
        gateway_hostname=BIND,
        server_verification_cert=emulator.ca_pem,
        websockets=True,
    )
    provisioning.provisioning_payload = {"fw": "2.0"}
    result = provisioning.register()
    state = result.registration_state
    assert (result.status, state.assigned_hub, state.device_id) == (
        "assigned",
        HEATPUMPS,
        "ws-py-1",
    )
    assert json.loads(state.response_payload) == {"welcome": "over websockets"}
    assert webhook.requests_for("ws-py-1")[0]["deviceRuntimeContext"]["payload"] == {"fw": "2.0"}

    device = IoTHubDeviceClient.create_from_symmetric_key(
        symmetric_key=key,
        hostname=state.assigned_hub,
        device_id=state.device_id,
        gateway_hostname=BIND,
        server_verification_cert=emulator.ca_pem,
        websockets=True,
    )
    received: queue.Queue[Message] = queue.Queue()
    device.on_message_received = received.put
    device.connect()
    try:
        twin = device.get_twin()
        assert twin["reported"] == {"$version": 1}
        device.patch_twin_reported_properties({"firmware": "2.0"})
        message = Message('{"temperature": 21.5}', message_id="ws-1")
        message.custom_properties["transport"] = "websockets"
        device.send_message(message)
        emulator.call(
            lambda: emulator.emulator.hub(HEATPUMPS).send_c2d(
                "ws-py-1", b"descale", message_id="c2d-1", properties={"when": "now"}
            )
        )
        c2d = received.get(timeout=10)
    finally:
        device.shutdown()
    assert (c2d.data, c2d.custom_properties) == (b"descale", {"when": "now"})
    (sent,) = hub_messages(emulator, HEATPUMPS, "ws-py-1")
    assert (sent.body, sent.properties) == (b'{"temperature": 21.5}', {"transport": "websockets"})
    hub_twin = emulator.call(lambda: emulator.emulator.hub(HEATPUMPS).twin("ws-py-1"))
    assert hub_twin is not None
    assert hub_twin.reported["firmware"] == "2.0"


def run_node_device(
    emulator: RunningEmulator, mode: str, registration_id: str, key: str, hub: str
) -> list[dict[str, Any]]:
    """Run tests/node/device.js: it provisions, sends telemetry, then waits for one C2D message,
    which this sends once the device says it is on its hub. Its JSON lines, in order."""
    assert (NODE / "node_modules" / "azure-iot-device").is_dir(), (
        "the Node device SDKs are missing: run `make install` (npm ci --prefix tests/node)"
    )
    env = {
        **os.environ,
        "EMULATOR_ADDRESS": BIND,
        "DPS_HOST": DPS_HOST,
        "ID_SCOPE": ID_SCOPE,
        "REGISTRATION_ID": registration_id,
        "DEVICE_KEY": key,
        "NODE_EXTRA_CA_CERTS": str(emulator.emulator.ca_path),
    }
    events: list[dict[str, Any]] = []
    with subprocess.Popen(
        ["node", str(NODE_DEVICE), mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            events.append(json.loads(line))
            if events[-1]["event"] == "sent":
                emulator.call(
                    lambda: emulator.emulator.hub(hub).send_c2d(
                        registration_id,
                        b"from the cloud",
                        message_id=f"c2d-{mode}",
                        properties={"colour": "red"},
                    )
                )
        stderr = process.stderr.read() if process.stderr is not None else ""
        assert process.wait(60) == 0, (events, stderr[-2000:])
    return events


@pytest.mark.parametrize("mode", ["http", "mqttws"])
def test_node_sdk_provisions_and_talks_to_its_hub(emulator: RunningEmulator, mode: str) -> None:
    """The Node.js SDKs, HTTPS (azure-iot-provisioning-device-http + azure-iot-device-http) or
    MQTT over WebSockets (the MqttWs transports): provisioned, telemetry received by the hub with
    its properties, one C2D message received and completed."""
    registration_id = f"node-{mode}-1"
    key = derive_device_key(STATIC_KEY, registration_id)
    events = run_node_device(emulator, mode, registration_id, key, TOASTERS)
    assert [event["event"] for event in events] == ["registered", "sent", "c2d", "done"]
    assert (events[0]["hub"], events[0]["deviceId"]) == (TOASTERS, registration_id)
    c2d = events[2]
    assert (c2d["body"], c2d["messageId"]) == ("from the cloud", f"c2d-{mode}")
    # The HTTP transport keeps the header's name as the property's; MQTT gives the bare name.
    assert "red" in c2d["properties"].values()
    (sent,) = hub_messages(emulator, TOASTERS, registration_id)
    assert json.loads(sent.body) == {"transport": mode, "temperature": 21.5}
    assert sent.properties == {"transport": mode}
    assert sent.system_properties["$.mid"] == f"{mode}-1"
    queued = emulator.call(lambda: emulator.emulator.hub(TOASTERS).device_view(registration_id))
    assert queued is not None
    assert queued.c2d_count == 0


def trust(emulator: RunningEmulator) -> ssl.SSLContext:
    """Trust the emulator's CA, and only it (curl's --cacert)."""
    return ssl.create_default_context(cafile=str(emulator.emulator.ca_path))


def dps_rest(
    emulator: RunningEmulator,
    method: str,
    *,
    path: str,
    registration_id: str,
    key: str,
    body: Any = None,
) -> httpx.Response:
    """One request as Microsoft's curl example sends it (DPS's host name in `Host`)."""
    token = generate_sas_token(
        f"{ID_SCOPE}/registrations/{registration_id}",
        key,
        int(time.time()) + 3600,
        policy_name="registration",
    )
    with httpx.Client(verify=trust(emulator), timeout=10) as client:
        return client.request(
            method,
            f"https://{BIND}/{ID_SCOPE}/registrations/{registration_id}/{path}"
            "?api-version=2021-06-01",
            headers={
                "Host": DPS_HOST,
                "Content-Type": "application/json",
                "Content-Encoding": "utf-8",
                "Authorization": token,
            },
            content=None if body is None else json.dumps(body).encode(),
        )


def test_raw_dps_rest_provisions_a_device(emulator: RunningEmulator) -> None:
    """PUT register -> 202 `assigning` with Retry-After; GET the operation until 200 `assigned`;
    the device then exists on its hub with the derived key, ready for the SDKs."""
    key = derive_device_key(STATIC_KEY, "rest-1")
    started = dps_rest(
        emulator,
        "PUT",
        path="register",
        registration_id="rest-1",
        key=key,
        body={"registrationId": "rest-1"},
    )
    assert started.status_code == 202, started.text
    assert started.headers["retry-after"] == "3"  # DPS's own value
    operation = started.json()
    assert operation["status"] == "assigning"
    answer = started
    deadline = time.monotonic() + 10
    while answer.status_code == 202:
        assert time.monotonic() < deadline, "still assigning"
        time.sleep(int(answer.headers["retry-after"]))
        path = f"operations/{operation['operationId']}"
        answer = dps_rest(emulator, "GET", path=path, registration_id="rest-1", key=key)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["status"] == "assigned"
    assert (
        result["registrationState"]["assignedHub"],
        result["registrationState"]["deviceId"],
    ) == (
        TOASTERS,
        "rest-1",
    )
    wait_for(lambda: emulator.call(lambda: emulator.emulator.hub(TOASTERS).device("rest-1")))


def test_raw_dps_rest_with_a_wrong_key_is_401(emulator: RunningEmulator) -> None:
    """A token signed with a key DPS does not know: 401 with DPS's code 401002."""
    refused = dps_rest(
        emulator,
        "PUT",
        path="register",
        registration_id="rest-2",
        key=CUSTOM_KEY,
        body={"registrationId": "rest-2"},
    )
    assert refused.status_code == 401
    assert refused.json()["errorCode"] == 401002
    assert refused.headers["x-ms-error-code"] == "401002"


def test_hub_https_requests_reach_the_hub_by_host_or_by_token(emulator: RunningEmulator) -> None:
    """A hub's HTTPS API is found by the `Host` header, or by the token's `sr` when `Host` is the
    emulator's address (a client sent there the way `gateway_hostname` sends the SDK)."""
    key = derive_device_key(STATIC_KEY, "http-3")
    add_device(emulator, TOASTERS, "http-3", key)
    token = generate_sas_token(f"{TOASTERS}/devices/http-3", key, int(time.time()) + 3600)
    with httpx.Client(verify=trust(emulator), timeout=10) as client:
        for host in (TOASTERS, BIND):
            answer = client.post(
                f"https://{BIND}/devices/http-3/messages/events?api-version=2021-04-12",
                headers={"Host": host, "Authorization": token, "iothub-app-via": host},
                content=b"hello",
            )
            assert answer.status_code == 204, answer.text
    vias = [message.properties["via"] for message in hub_messages(emulator, TOASTERS, "http-3")]
    assert vias == [TOASTERS, BIND]
