"""`https.dps_api`: DPS's HTTPS device API over a real `DpsService`, no sockets.

The bodies, statuses and errors are DPS's over either transport, because both call the same
`DpsService.register` / `poll`: an operation started over HTTPS is polled over MQTT and back.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import pytest

from emulator.config import EmulatorConfig, parse_config
from emulator.dps.service import DpsService
from emulator.dps.webhook import HttpWebhook
from emulator.https.dps_api import DpsHttpApi, is_dps_path
from emulator.hub.directory import Hubs
from emulator.service.api import Request, ServiceResponse
from sas import derive_device_key, generate_sas_token, sign

NOW = 1_700_000_000.0
SCOPE = "0ne00000A1B"
GROUP_KEY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
TOASTERS = "toasters.azure-devices.net"
API = "?api-version=2019-03-31"


def config() -> EmulatorConfig:
    return parse_config(
        {
            "dps": {"id_scope": SCOPE},
            "hubs": [{"name": TOASTERS}],
            "enrollment_groups": [
                {
                    "id": "line-1",
                    "primary_key": GROUP_KEY,
                    "secondary_key": GROUP_KEY,
                    "allocation": "static",
                },
                {
                    "id": "off",
                    "primary_key": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
                    "secondary_key": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
                    "enabled": False,
                },
            ],
        },
        source="test.toml",
    )


def token(registration_id: str, *, key: str = GROUP_KEY, expiry: int = 2_000_000_000) -> str:
    """The SAS a device of the group presents (`skn=registration`, as the SDKs send it)."""
    device_key = derive_device_key(key, registration_id)
    resource = f"{SCOPE}/registrations/{registration_id}"
    return generate_sas_token(resource, device_key, expiry, policy_name="registration")


def node_token(registration_id: str) -> str:
    """The form the Node SDK and Microsoft's curl example send: `%2f`, field order sr sig skn se."""
    resource = f"{SCOPE}%2fregistrations%2f{registration_id}"
    signature = sign(derive_device_key(GROUP_KEY, registration_id), f"{resource}\n2000000000")
    return (
        f"SharedAccessSignature sr={resource}&sig={quote(signature, safe='')}"
        "&skn=registration&se=2000000000"
    )


def request(method: str, target: str, *, auth: str | None = None, body: bytes = b"") -> Request:
    headers = {"content-type": "application/json; charset=utf-8"}
    if auth is not None:
        headers["authorization"] = auth
    return Request(method=method, target=target, headers=headers, body=body)


def register(registration_id: str, **fields: Any) -> Request:
    body = json.dumps({"registrationId": registration_id, **fields}).encode()
    return request(
        "PUT",
        f"/{SCOPE}/registrations/{registration_id}/register{API}",
        auth=token(registration_id),
        body=body,
    )


def poll(registration_id: str, operation_id: str, auth: str | None = None) -> Request:
    return request(
        "GET",
        f"/{SCOPE}/registrations/{registration_id}/operations/{operation_id}{API}",
        auth=auth or token(registration_id),
    )


Scenario = Callable[[DpsHttpApi, DpsService, Hubs], Awaitable[None]]


def run(scenario: Scenario, *, throttle: Callable[[float], int | None] | None = None) -> None:
    async def main() -> None:
        hubs = Hubs([TOASTERS], clock=lambda: NOW)
        dps = DpsService(config(), hubs, HttpWebhook(), clock=lambda: NOW)
        try:
            await scenario(DpsHttpApi(dps, throttle=throttle), dps, hubs)
        finally:
            await dps.aclose()

    asyncio.run(main())


def body(response: ServiceResponse) -> Any:
    return json.loads(response.body)


def header(response: ServiceResponse, name: str) -> str | None:
    return next((v for k, v in response.headers if k.lower() == name.lower()), None)


def test_register_then_poll_assigns_the_device() -> None:
    """PUT register answers 202 assigning with Retry-After; the poll then answers 200 assigned,
    and the device exists on its hub with the key derived for it."""

    async def scenario(api: DpsHttpApi, dps: DpsService, hubs: Hubs) -> None:
        started = api.handle(register("dev-http-1"), now=NOW)
        assert started.status == 202
        assert header(started, "Retry-After") == "3"  # DPS's own value
        assert body(started)["status"] == "assigning"
        await dps.idle()
        done = api.handle(poll("dev-http-1", body(started)["operationId"]), now=NOW)
        assert done.status == 200
        state = body(done)["registrationState"]
        assert (body(done)["status"], state["assignedHub"], state["deviceId"]) == (
            "assigned",
            TOASTERS,
            "dev-http-1",
        )
        device = hubs.hub(TOASTERS).device("dev-http-1")
        assert device is not None
        assert device.primary_key == derive_device_key(GROUP_KEY, "dev-http-1")

    run(scenario)


def test_one_operation_seen_over_both_transports() -> None:
    """An operation started over HTTPS is polled over MQTT with the very same body: one DPS."""

    async def scenario(api: DpsHttpApi, dps: DpsService, hubs: Hubs) -> None:
        operation = body(api.handle(register("dev-both"), now=NOW))["operationId"]
        await dps.idle()
        replies: list[tuple[str, bytes]] = []
        password = token("dev-both").encode()
        username = f"{SCOPE}/registrations/dev-both/api-version=2019-03-31"
        assert (
            dps.connect(
                client_id="dev-both",
                username=username,
                password=password,
                send=lambda t, p: None,
                close=lambda: None,
                now=NOW,
            )
            == 0
        )
        topic = f"$dps/registrations/GET/iotdps-get-operationstatus/?$rid=7&operationId={operation}"
        dps.publish(
            client_id="dev-both",
            topic=topic,
            payload=b"",
            send=lambda t, p: replies.append((t, p)),
            now=NOW,
        )
        over_http = api.handle(poll("dev-both", operation), now=NOW)
        assert replies == [("$dps/registrations/res/200/?$rid=7", over_http.body)]

    run(scenario)


def test_node_and_curl_token_form_is_accepted() -> None:
    """`sr` with a lower-case `%2f` and `skn` before `se` authenticates (Node SDK, curl docs)."""

    async def scenario(api: DpsHttpApi, dps: DpsService, hubs: Hubs) -> None:
        started = api.handle(
            request(
                "PUT",
                f"/{SCOPE}/registrations/dev-node/register{API}",
                auth=node_token("dev-node"),
                body=b'{"registrationId":"dev-node"}',
            ),
            now=NOW,
        )
        assert started.status == 202

    run(scenario)


@pytest.mark.parametrize(
    ("auth", "target"),
    [
        (None, f"/{SCOPE}/registrations/dev-1/register{API}"),
        ("SharedAccessSignature sr=x", f"/{SCOPE}/registrations/dev-1/register{API}"),
        (token("dev-1", expiry=1_600_000_000), f"/{SCOPE}/registrations/dev-1/register{API}"),
        (token("dev-2"), f"/{SCOPE}/registrations/dev-1/register{API}"),
        (
            token("dev-1", key="AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="),
            f"/{SCOPE}/registrations/dev-1/register{API}",
        ),
        (token("dev-1"), f"/0ne00000FFF/registrations/dev-1/register{API}"),
    ],
    ids=["no-token", "malformed", "expired", "other-device", "wrong-key", "other-scope"],
)
def test_refused_credentials_are_401_with_dps_code(auth: str | None, target: str) -> None:
    """Every credential problem is 401 with DPS's errorCode 401002, and nothing is registered."""

    async def scenario(api: DpsHttpApi, dps: DpsService, hubs: Hubs) -> None:
        answer = api.handle(request("PUT", target, auth=auth, body=b"{}"), now=NOW)
        assert answer.status == 401
        assert body(answer)["errorCode"] == 401002
        assert header(answer, "x-ms-error-code") == "401002"
        assert dps.attempts() == ()

    run(scenario)


@pytest.mark.parametrize(
    ("method", "target", "status", "text"),
    [
        ("GET", f"/{SCOPE}/registrations/dev-1/register{API}", 405, "Method GET"),
        ("PUT", f"/{SCOPE}/registrations/dev-1/register", 400, "api-version"),
        ("POST", f"/{SCOPE}/registrations/dev-1{API}", 404, "Unknown DPS path"),
        ("GET", f"/{SCOPE}/registrations/dev-1/operations/{API}", 404, "Unknown DPS path"),
        ("PUT", f"/{SCOPE}/devices/dev-1/register{API}", 404, "Unknown DPS path"),
    ],
)
def test_requests_dps_does_not_serve_are_named(
    method: str, target: str, status: int, text: str
) -> None:
    """A wrong method, a missing api-version or an unknown path gets its status and a message."""

    async def scenario(api: DpsHttpApi, dps: DpsService, hubs: Hubs) -> None:
        answer = api.handle(request(method, target, auth=token("dev-1"), body=b"{}"), now=NOW)
        assert answer.status == status
        assert text in body(answer)["message"]

    run(scenario)


@pytest.mark.parametrize(
    ("payload", "status", "text"),
    [
        (b"[1]", 400, "expected a JSON object"),
        (b'{"registrationId": "someone-else"}', 401, "registrationId"),
        (b'{"payload": NaN}', 400, "register body"),
        (b"\xff", 400, "register body"),
    ],
)
def test_bad_register_bodies_are_refused_naming_the_field(
    payload: bytes, status: int, text: str
) -> None:
    """A body that is not a JSON object is DPS's 400 (400012); one naming another device is DPS's
    401 (401002); each says which member."""

    async def scenario(api: DpsHttpApi, dps: DpsService, hubs: Hubs) -> None:
        target = f"/{SCOPE}/registrations/dev-1/register{API}"
        answer = api.handle(request("PUT", target, auth=token("dev-1"), body=payload), now=NOW)
        assert answer.status == status
        assert text in body(answer)["message"]

    run(scenario)


def test_unknown_operation_is_404_and_another_devices_too() -> None:
    """Polling an operation that is not the device's own is 404, as over MQTT."""

    async def scenario(api: DpsHttpApi, dps: DpsService, hubs: Hubs) -> None:
        operation = body(api.handle(register("dev-a"), now=NOW))["operationId"]
        assert api.handle(poll("dev-a", "no-such-operation"), now=NOW).status == 404
        assert api.handle(poll("dev-b", operation), now=NOW).status == 404
        assert api.handle(poll("dev-a", operation), now=NOW).status in (200, 202)

    run(scenario)


def test_disabled_enrollment_is_200_disabled() -> None:
    """A device of a disabled enrollment registers and polls to `disabled`, as over MQTT."""

    async def scenario(api: DpsHttpApi, dps: DpsService, hubs: Hubs) -> None:
        key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
        target = f"/{SCOPE}/registrations/dev-off/register{API}"
        started = api.handle(
            request("PUT", target, auth=token("dev-off", key=key), body=b"{}"), now=NOW
        )
        await dps.idle()
        done = api.handle(
            poll("dev-off", body(started)["operationId"], auth=token("dev-off", key=key)), now=NOW
        )
        assert (done.status, body(done)["status"]) == (200, "disabled")

    run(scenario)


def test_throttled_dps_answers_429_with_retry_after() -> None:
    """While a fault throttles DPS, requests get 429, DPS's throttling body and Retry-After."""

    async def scenario(api: DpsHttpApi, dps: DpsService, hubs: Hubs) -> None:
        answer = api.handle(register("dev-slow"), now=NOW)
        assert (answer.status, header(answer, "Retry-After")) == (429, "5")
        assert body(answer)["errorCode"] == 429001

    run(scenario, throttle=lambda now: 5)


def test_dps_paths_are_recognised_by_shape() -> None:
    """`/{scope}/registrations/...` is DPS's; a hub's `/devices/...` is not."""
    assert is_dps_path(f"/{SCOPE}/registrations/dev/register")
    assert not is_dps_path("/devices/dev/messages/events")
    assert not is_dps_path("/registrations")
