"""`https.hub_api`: IoT Hub's HTTPS device API over real hubs, no sockets.

Telemetry lands in the hub's message log as MQTT telemetry does; C2D messages come out of the
same queue MQTT devices read, locked while the device decides, and back in it when abandoned or
when the lock runs out.
"""

from __future__ import annotations

import json
from itertools import count

import pytest

from emulator.endpoints import connack_of
from emulator.https.hub_api import LOCK_SECONDS, HubHttpApi, hub_of_token
from emulator.hub.directory import Hubs
from emulator.service.api import Request, ServiceResponse
from sas import generate_sas_token

NOW = 1_700_000_000.0
TOASTERS = "toasters.azure-devices.net"
KEY = "OSANXEslinwdWI7CugTZIIMS97VdG65m3pD753neq7E="
OTHER_KEY = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
API = "?api-version=2021-04-12"


def token(device_id: str = "dev-1", *, key: str = KEY, hub: str = TOASTERS) -> str:
    return generate_sas_token(f"{hub}/devices/{device_id}", key, 2_000_000_000)


def setup() -> tuple[Hubs, HubHttpApi]:
    hubs = Hubs([TOASTERS], clock=lambda: NOW)
    for device in ("dev-1", "dev-2"):
        hubs.upsert_device(TOASTERS, device, primary_key=KEY, secondary_key=KEY, twin=None)
    counter = count(1)
    api = HubHttpApi(hubs, entropy=lambda n: next(counter).to_bytes(n, "big"))
    return hubs, api


def call(
    api: HubHttpApi,
    method: str,
    target: str,
    *,
    auth: str | None = None,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    now: float = NOW,
) -> ServiceResponse:
    sent = {"authorization": auth if auth is not None else token()}
    if auth == "":
        del sent["authorization"]
    sent.update(headers or {})
    return api.handle(
        Request(method=method, target=target, headers=sent, body=body), TOASTERS, now=now
    )


def header(response: ServiceResponse, name: str) -> str | None:
    return next((v for k, v in response.headers if k.lower() == name.lower()), None)


def error_code(response: ServiceResponse) -> str | None:
    return header(response, "iothub-errorcode")


def test_telemetry_lands_in_the_hub_with_its_properties() -> None:
    """POST events is 204; the body and the `iothub-*` headers become the message and its
    properties, as the same message sent over MQTT would."""
    hubs, api = setup()
    answer = call(
        api,
        "POST",
        f"/devices/dev-1/messages/events{API}",
        headers={
            "iothub-app-color": "red blue",
            "iothub-app-flag": "",
            "iothub-messageid": "m-1",
            "iothub-contenttype": "application/json",
            "iothub-contentencoding": "utf-8",
            "content-type": "application/json",
        },
        body=b'{"t": 21}',
    )
    assert answer.status == 204
    (message,) = hubs.hub(TOASTERS).messages
    assert (message.device_id, message.body) == ("dev-1", b'{"t": 21}')
    assert message.properties == {"color": "red blue", "flag": ""}
    assert message.system_properties == {
        "$.mid": "m-1",
        "$.ct": "application/json",
        "$.ce": "utf-8",
    }


def test_receive_complete_takes_the_message_out() -> None:
    """GET devicebound gives the oldest message with its lock token as ETag and its properties
    as headers; DELETE with that token completes it; the queue is then empty (204)."""
    hubs, api = setup()
    hub = hubs.hub(TOASTERS)
    hub.send_c2d("dev-1", b"first", message_id="c-1", properties={"colour": "grün"})
    hub.send_c2d("dev-1", b"second", message_id="c-2")
    got = call(api, "GET", f"/devices/dev-1/messages/devicebound{API}")
    assert (got.status, got.body) == (200, b"first")
    lock = (header(got, "ETag") or "").strip('"')
    assert lock
    assert header(got, "iothub-messageid") == "c-1"
    assert header(got, "iothub-to") == "/devices/dev-1/messages/deviceBound"
    assert header(got, "iothub-app-colour") == "gr%C3%BCn"  # headers carry ASCII only
    done = call(api, "DELETE", f"/devices/dev-1/messages/devicebound/{lock}{API}")
    assert done.status == 204
    again = call(api, "DELETE", f"/devices/dev-1/messages/devicebound/{lock}{API}")
    assert (again.status, error_code(again)) == (412, "DeviceMessageLockLost")
    second = call(api, "GET", f"/devices/dev-1/messages/devicebound{API}")
    assert second.body == b"second"
    lock = (header(second, "ETag") or "").strip('"')
    rejected = call(api, "DELETE", f"/devices/dev-1/messages/devicebound/{lock}{API}&reject")
    assert rejected.status == 204
    assert call(api, "GET", f"/devices/dev-1/messages/devicebound{API}").status == 204


def test_abandon_and_lock_expiry_put_the_message_back_first() -> None:
    """An abandoned message is the next one received; so is one whose lock ran out, after which
    its old token no longer completes it."""
    hubs, api = setup()
    hub = hubs.hub(TOASTERS)
    hub.send_c2d("dev-1", b"one", message_id="c-1")
    hub.send_c2d("dev-1", b"two", message_id="c-2")
    first = call(api, "GET", f"/devices/dev-1/messages/devicebound{API}")
    lock = (header(first, "ETag") or "").strip('"')
    path = f"/devices/dev-1/messages/devicebound/{lock}/abandon{API}"
    assert call(api, "POST", path).status == 204
    again = call(api, "GET", f"/devices/dev-1/messages/devicebound{API}")
    assert again.body == b"one"
    stale = (header(again, "ETag") or "").strip('"')
    later = NOW + LOCK_SECONDS + 1
    after = call(api, "GET", f"/devices/dev-1/messages/devicebound{API}", now=later)
    assert after.body == b"one"  # the lock ran out: back at the head, before "two"
    lost = call(api, "DELETE", f"/devices/dev-1/messages/devicebound/{stale}{API}", now=later)
    assert lost.status == 412


def test_a_locked_message_is_not_sent_over_mqtt_and_an_abandoned_one_is() -> None:
    """HTTPS and MQTT read one queue: a message locked over HTTPS is invisible to an MQTT
    connection of the device until it is abandoned."""
    hubs, api = setup()
    hub = hubs.hub(TOASTERS)
    hub.send_c2d("dev-1", b"only", message_id="c-1")
    lock = header(call(api, "GET", f"/devices/dev-1/messages/devicebound{API}"), "ETag") or ""
    sent: list[tuple[str, bytes]] = []
    password = token().encode()
    username = f"{TOASTERS}/dev-1/?api-version=2021-04-12"
    answer = hub.connect(
        client_id="dev-1",
        username=username,
        password=password,
        send=lambda t, p, **_: sent.append((t, p)),
        close=lambda: None,
        now=NOW,
    )
    assert connack_of(answer).code == 0
    hub.subscribe(client_id="dev-1", topic_filter="devices/dev-1/messages/devicebound/#", qos=0)
    assert sent == []
    path = f"/devices/dev-1/messages/devicebound/{lock.strip(chr(34))}/abandon{API}"
    assert call(api, "POST", path).status == 204
    assert [payload for _, payload in sent] == [b"only"]


@pytest.mark.parametrize(
    ("auth", "target"),
    [
        ("", f"/devices/dev-1/messages/events{API}"),
        ("SharedAccessSignature nonsense", f"/devices/dev-1/messages/events{API}"),
        (token("dev-2"), f"/devices/dev-1/messages/events{API}"),
        (token(key=OTHER_KEY), f"/devices/dev-1/messages/events{API}"),
        (token("ghost"), f"/devices/ghost/messages/events{API}"),
    ],
    ids=["none", "malformed", "other-device", "wrong-key", "unknown-device"],
)
def test_refused_credentials_are_401(auth: str, target: str) -> None:
    """Any credential a CONNECT would be refused with is 401 IotHubUnauthorizedAccess, and no
    message is logged."""
    hubs, api = setup()
    answer = call(api, "POST", target, auth=auth, body=b"x")
    assert (answer.status, error_code(answer)) == (401, "IotHubUnauthorizedAccess")
    assert hubs.hub(TOASTERS).messages == ()


@pytest.mark.parametrize(
    ("method", "target", "status", "code"),
    [
        ("GET", f"/devices/dev-1/messages/events{API}", 405, "MethodNotAllowed"),
        ("POST", "/devices/dev-1/messages/events", 400, "InvalidProtocolVersion"),
        ("GET", f"/devices/dev-1/twin{API}", 404, "ResourceNotFound"),
        ("POST", f"/devices/dev-1/modules/m/messages/events{API}", 404, "ResourceNotFound"),
        ("PUT", f"/devices/dev-1/messages/devicebound/lock{API}", 405, "MethodNotAllowed"),
    ],
)
def test_what_the_hub_does_not_serve_over_https(
    method: str, target: str, status: int, code: str
) -> None:
    """Other paths and methods get IoT Hub's error body and code, never a 5xx."""
    _, api = setup()
    answer = call(api, method, target)
    assert (answer.status, error_code(answer)) == (status, code)
    assert json.loads(answer.body)["Message"].startswith(f"ErrorCode:{code};")


def test_an_unknown_hub_is_404() -> None:
    """A request for a hub the emulator does not have is 404 IotHubNotFound."""
    _, api = setup()
    request = Request(method="GET", target=f"/devices/d/messages/devicebound{API}", headers={})
    answer = api.handle(request, "nowhere.azure-devices.net", now=NOW)
    assert (answer.status, error_code(answer)) == (404, "IotHubNotFound")


def test_the_hub_a_token_names() -> None:
    """`sr`'s host, whatever the field order or encoding; None without a token."""
    assert hub_of_token(token()) == TOASTERS
    assert hub_of_token("SharedAccessSignature sig=x&sr=Hub.Azure-Devices.net/devices/d") == (
        "hub.azure-devices.net"
    )
    assert hub_of_token(None) is None
    assert hub_of_token("SharedAccessSignature sig=x") is None
