"""Edges of DPS and the hub seen by the real SDKs over TLS on 127.46.3.1:8883: `disabled` on the
wire (and the operator's enable/disable), the masked webhook URL in the AllocationRequest, a moved
device refused by its old hub, and malformed MQTT input to the emulator's listener."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator

import pytest
from azure.iot.device.exceptions import ClientError, CredentialError

from emulator.__main__ import main as emulator_main
from emulator.mqtt import Connack, Publish, Suback
from sas import derive_device_key, generate_sas_token
from tests.emulator.e2e.dps_wire import tap, tapped_emulator
from tests.emulator.e2e.harness import (
    HEATPUMPS,
    ID_SCOPE,
    TOASTERS,
    RunningEmulator,
    device_client,
    emulator_toml,
    register,
)
from tests.emulator.mqtt.client_engine import ClientEngine
from tests.scripted_webhook import ScriptedWebhook

pytestmark = pytest.mark.e2e

BIND = "127.46.3.1"
OFF_GROUP_KEY = "CgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgo="
OFF_SOLO_KEY = "CwsLCwsLCwsLCwsLCwsLCwsLCwsLCwsLCwsLCwsLCws="
CUSTOM_KEY = "DAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAw="
RESET_KEY = "DQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0="
STATIC_KEY = "Dg4ODg4ODg4ODg4ODg4ODg4ODg4ODg4ODg4ODg4ODg4="
UNUSED = "Dw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8="


def config(webhook_url: str) -> str:
    custom = {"allocation": "custom", "webhook_url": webhook_url, "hubs": [TOASTERS, HEATPUMPS]}
    static = {"allocation": "static", "hubs": [TOASTERS]}
    return emulator_toml(
        hubs=[TOASTERS, HEATPUMPS],
        groups=[
            {
                "id": "switched-off",
                "primary_key": OFF_GROUP_KEY,
                "secondary_key": UNUSED,
                **static,
                "enabled": False,
            },
            {
                "id": "custom-migrate",
                "primary_key": CUSTOM_KEY,
                "secondary_key": UNUSED,
                **custom,
                "reprovision": "migrate",
            },
            {
                "id": "custom-reset",
                "primary_key": RESET_KEY,
                "secondary_key": UNUSED,
                **custom,
                "reprovision": "reset",
            },
            {"id": "static-toasters", "primary_key": STATIC_KEY, "secondary_key": UNUSED, **static},
        ],
        individuals=[
            {
                "registration_id": "solo-off",
                "primary_key": OFF_SOLO_KEY,
                "secondary_key": UNUSED,
                **static,
                "enabled": False,
            }
        ],
    )


@pytest.fixture(scope="module")
def webhook() -> Iterator[ScriptedWebhook]:
    """The scripted webhook, over real HTTP on a free port."""
    with ScriptedWebhook(BIND, key="edge-function-key") as server:
        yield server


@pytest.fixture(scope="module")
def emulator(
    tmp_path_factory: pytest.TempPathFactory, webhook: ScriptedWebhook
) -> Iterator[RunningEmulator]:
    """One emulator for the module, its DPS replies recorded by a wire tap."""
    with tapped_emulator(tmp_path_factory.mktemp("edges"), BIND, config(webhook.url)) as running:
        yield running


def command(emulator: RunningEmulator, *argv: str) -> int:
    return emulator_main([*argv, "--state-dir", str(emulator.emulator.options.state_dir)])


@pytest.mark.parametrize(
    ("registration_id", "key"),
    [
        ("off-001", derive_device_key(OFF_GROUP_KEY, "off-001")),
        ("solo-off", OFF_SOLO_KEY),
    ],
    ids=["group", "individual"],
)
def test_disabled_enrollment_answers_status_disabled(
    emulator: RunningEmulator, registration_id: str, key: str
) -> None:
    """A disabled group or individual enrollment: DPS's last reply says `disabled`, no device."""
    with pytest.raises(ClientError):
        register(emulator, registration_id, key)
    body = tap(emulator).final_body(registration_id)
    assert body["status"] == "disabled"
    assert "assignedHub" not in body.get("registrationState", {})
    assert emulator.call(lambda: emulator.emulator.hub(TOASTERS).device(registration_id)) is None


def test_operator_disable_then_enable_a_group(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """`disable GROUP` makes the next registration `disabled`; `enable GROUP` assigns it again."""
    key = derive_device_key(STATIC_KEY, "toggle-001")
    assert command(emulator, "disable", "static-toasters") == 0
    with pytest.raises(ClientError):
        register(emulator, "toggle-001", key)
    assert tap(emulator).final_body("toggle-001")["status"] == "disabled"
    assert command(emulator, "enable", "static-toasters") == 0
    capsys.readouterr()
    result = register(emulator, "toggle-001", key)
    assert (result.status, result.registration_state.assigned_hub) == ("assigned", TOASTERS)


def test_allocation_request_carries_the_masked_webhook_url(
    emulator: RunningEmulator, webhook: ScriptedWebhook
) -> None:
    """The webhook sees its own URL with the query (the function key) masked as ?****."""
    webhook.by_registration["mask-001"] = [(200, {"iotHubHostName": TOASTERS})]
    register(emulator, "mask-001", derive_device_key(CUSTOM_KEY, "mask-001"))
    [request] = webhook.requests_for("mask-001")
    definition = request["enrollmentGroup"]["customAllocationDefinition"]
    assert definition["webhookUrl"] == webhook.url.split("?")[0] + "?****"
    assert "edge-function-key" not in json.dumps(request)
    assert CUSTOM_KEY not in json.dumps(request)


@pytest.mark.parametrize(
    ("group_key", "substatus"),
    [(CUSTOM_KEY, "deviceDataMigrated"), (RESET_KEY, "deviceDataReset")],
    ids=["migrate", "reset"],
)
def test_moved_device_is_refused_by_its_old_hub(
    emulator: RunningEmulator, webhook: ScriptedWebhook, group_key: str, substatus: str
) -> None:
    """After a move to another hub the old hub no longer knows the device: CONNACK 5 there."""
    registration_id = f"mover-{substatus}"
    key = derive_device_key(group_key, registration_id)
    webhook.by_registration[registration_id] = [
        (200, {"iotHubHostName": TOASTERS}),
        (200, {"iotHubHostName": HEATPUMPS}),
    ]
    assert register(emulator, registration_id, key).registration_state.assigned_hub == TOASTERS
    second = register(emulator, registration_id, key).registration_state
    assert (second.assigned_hub, second.sub_status) == (HEATPUMPS, substatus)
    assert emulator.call(lambda: emulator.emulator.hub(TOASTERS).device(registration_id)) is None
    old = device_client(emulator, TOASTERS, registration_id, key)
    try:
        with pytest.raises(CredentialError):
            old.connect()
    finally:
        old.shutdown()
    new = device_client(emulator, HEATPUMPS, registration_id, key)
    try:
        new.connect()
        assert new.get_twin()["desired"]["$version"] >= 1
    finally:
        new.shutdown()


class RawClient:
    """A TLS socket to the emulator's MQTT listener, driven by the test client engine."""

    def __init__(self, emulator: RunningEmulator) -> None:
        context = ssl.create_default_context(cafile=str(emulator.emulator.ca_path))
        plain = socket.create_connection((BIND, 8883), timeout=5)
        self.tls = context.wrap_socket(plain, server_hostname=BIND)
        self.engine = ClientEngine()

    def packets(self, count: int = 1) -> list[object]:
        got: list[object] = []
        while len(got) < count:
            data = self.tls.recv(65536)
            assert data, f"connection closed after {got}"
            got += self.engine.receive_data(data)
        return got

    def close(self) -> None:
        self.tls.close()


def closed_by_server(connection: socket.socket) -> bool:
    """Read until the server closes; a 5 s socket timeout (TimeoutError) fails the test."""
    try:
        while connection.recv(65536):
            pass
    except (ConnectionResetError, ssl.SSLError):
        pass
    return True


def dps_connect(emulator: RunningEmulator, registration_id: str, key: str) -> RawClient:
    """A raw DPS session for `registration_id`, CONNACK 0 checked, response topic subscribed."""
    client = RawClient(emulator)
    resource = f"{ID_SCOPE}/registrations/{registration_id}"
    password = generate_sas_token(resource, key, int(time.time()) + 3600, "registration")
    client.tls.sendall(
        client.engine.connect(
            registration_id,
            username=f"{resource}/api-version=2019-03-31",
            password=password.encode(),
            clean_session=True,
        )
    )
    assert client.packets() == [Connack(0)]
    client.tls.sendall(client.engine.subscribe("$dps/registrations/res/#"))
    assert client.packets() == [Suback(1, (1,))]
    return client


def test_malformed_mqtt_input_is_answered_and_the_listener_keeps_serving(
    emulator: RunningEmulator,
) -> None:
    """Plain text on the TLS port, garbage after TLS, a bad DPS request: each answered or closed
    on its own, and the real SDK registers afterwards."""
    with socket.create_connection((BIND, 8883), timeout=5) as plain:
        plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed_by_server(plain)  # a TLS alert at most, then closed (not a 5 s timeout)

    garbage = RawClient(emulator)
    garbage.tls.sendall(b"\x10\x05\x00\x04MQTX")  # a CONNECT naming another protocol
    assert closed_by_server(garbage.tls)
    garbage.close()

    key = derive_device_key(STATIC_KEY, "raw-001")
    session = dps_connect(emulator, "raw-001", key)
    try:
        session.tls.sendall(
            session.engine.publish("$dps/registrations/PUT/iotdps-register/?$rid=bad", b"{nope")
        )
        replies = [p for p in session.packets(2) if isinstance(p, Publish)]
        assert [p.topic for p in replies] == ["$dps/registrations/res/400/?$rid=bad"]
        session.tls.sendall(session.engine.publish("$dps/registrations/NOPE/?$rid=x", b"{}"))
        replies = [p for p in session.packets(2) if isinstance(p, Publish)]
        assert replies[0].topic.startswith("$dps/registrations/res/4")
    finally:
        session.close()

    result = register(emulator, "raw-001", key)
    assert (result.status, result.registration_state.assigned_hub) == ("assigned", TOASTERS)
