"""The HTTPS port fed what no SDK sends: arbitrary requests to DPS's and the hubs' device APIs,
arbitrary bytes and frames after a WebSocket handshake. Nothing answers 5xx, nothing raises, no
error is logged, and the port keeps serving real clients afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.config import parse_config
from emulator.dps.service import DpsService
from emulator.dps.webhook import HttpWebhook
from emulator.https.dps_api import DpsHttpApi
from emulator.https.gateway import HttpsGateway
from emulator.https.hub_api import HubHttpApi
from emulator.hub.directory import Hubs
from emulator.in_process import LoopThread
from emulator.mqtt import Connack
from emulator.mqtt.server import MqttServer
from emulator.service.api import Request
from sas import derive_device_key, generate_sas_token
from tests.emulator.mqtt.ws_client import WsPeer
from tests.strategies import header_values, json_values, url_paths

ADDRESS = "127.53.2.1"
SCOPE = "0ne00000001"
HUB = "toasters.azure-devices.net"
DPS_HOST = "global.azure-devices-provisioning.net"
GROUP_KEY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
DEVICE_KEY = "OSANXEslinwdWI7CugTZIIMS97VdG65m3pD753neq7E="
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SLOW_FUZZ = settings(FUZZ, max_examples=40)

DPS_TOKEN = generate_sas_token(
    f"{SCOPE}/registrations/dev-1", derive_device_key(GROUP_KEY, "dev-1"), 4_000_000_000
)
HUB_TOKEN = generate_sas_token(f"{HUB}/devices/dev-1", DEVICE_KEY, 4_000_000_000)

methods = st.sampled_from(["GET", "PUT", "POST", "DELETE", "PATCH"])
queries = st.sampled_from(["", "?api-version=2019-03-31", "?api-version=", "?api-version=1&reject"])
bodies = st.binary(max_size=300) | json_values.map(lambda value: json.dumps(value).encode())
authorizations = st.sampled_from([DPS_TOKEN, HUB_TOKEN, None]) | header_values()
extra_headers = st.dictionaries(
    st.sampled_from(
        ["iothub-app-x", "iothub-messageid", "iothub-contenttype", "iothub-app-", "content-type"]
    ),
    header_values(),
    max_size=4,
)


def config_document() -> dict[str, object]:
    return {
        "dps": {"id_scope": SCOPE, "host": DPS_HOST},
        "hubs": [{"name": HUB}],
        "enrollment_groups": [
            {
                "id": "g",
                "primary_key": GROUP_KEY,
                "secondary_key": GROUP_KEY,
                "allocation": "static",
            }
        ],
    }


def build() -> tuple[Hubs, DpsService]:
    hubs = Hubs([HUB], clock=lambda: 1_700_000_000.0)
    hubs.upsert_device(HUB, "dev-1", primary_key=DEVICE_KEY, secondary_key=DEVICE_KEY, twin=None)
    hubs.hub(HUB).send_c2d("dev-1", b"c2d", message_id="m", properties={"p": "v"})
    dps = DpsService(parse_config(config_document(), source="fuzz.toml"), hubs, HttpWebhook())
    return hubs, dps


def headers_with(authorization: str | None, extra: dict[str, str]) -> dict[str, str]:
    headers = dict(extra)
    if authorization is not None:
        headers["authorization"] = authorization
    return headers


@FUZZ
@given(
    method=methods,
    path=url_paths([f"/{SCOPE}/registrations/dev-1/", f"/{SCOPE}/registrations/dev-1/register"]),
    query=queries,
    authorization=authorizations,
    extra=extra_headers,
    body=bodies,
)
def test_dps_api_never_fails_on_any_request(
    *,
    method: str,
    path: str,
    query: str,
    authorization: str | None,
    extra: dict[str, str],
    body: bytes,
) -> None:
    """Any request to DPS's API gets a 2xx or 4xx with DPS's JSON error body, never an exception."""

    async def one() -> None:
        _, dps = build()
        api = DpsHttpApi(dps)
        request = Request(
            method=method,
            target=path + query,
            headers=headers_with(authorization, extra),
            body=body,
        )
        answer = api.handle(request, now=1_700_000_000.0)
        assert 200 <= answer.status < 500
        document = json.loads(answer.body)
        assert isinstance(document, dict)
        await dps.aclose()

    asyncio.run(one())


@FUZZ
@given(
    method=methods,
    path=url_paths(["/devices/dev-1/messages/", "/devices/dev-1/messages/devicebound/"]),
    query=queries,
    authorization=authorizations,
    extra=extra_headers,
    body=bodies,
)
def test_hub_api_never_fails_on_any_request(
    *,
    method: str,
    path: str,
    query: str,
    authorization: str | None,
    extra: dict[str, str],
    body: bytes,
) -> None:
    """Any request to a hub's device API gets a 2xx or 4xx, with headers HTTP can carry."""
    hubs, _ = build()
    api = HubHttpApi(hubs)
    request = Request(
        method=method, target=path + query, headers=headers_with(authorization, extra), body=body
    )
    answer = api.handle(request, HUB, now=1_700_000_000.0)
    assert 200 <= answer.status < 500
    for name, value in answer.headers:
        name.encode("ascii")
        value.encode("latin-1")
        assert "\r" not in value
        assert "\n" not in value


class Errors(logging.Handler):
    """Every ERROR the emulator or uvicorn logs while the port is fuzzed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def gateway() -> Iterator[tuple[LoopThread, HttpsGateway, Errors]]:
    """The real HTTPS gateway (without TLS, for speed) on its own loop thread."""
    errors = Errors()
    loggers = [logging.getLogger(name) for name in ("emulator", "uvicorn")]
    for logger in loggers:
        logger.addHandler(errors)
    with LoopThread("fuzz-gateway") as thread:
        hubs, dps = thread.run(_async_build())
        mqtt = MqttServer(router=lambda username: hubs.hub(HUB), ssl_context=None, host=ADDRESS)
        port = HttpsGateway(
            dps=DpsHttpApi(dps),
            hubs=HubHttpApi(hubs),
            hub_names=[HUB],
            dps_host=DPS_HOST,
            mqtt=mqtt,
            ssl_context=None,
            host=ADDRESS,
            port=0,
        )
        thread.run(port.start())
        try:
            yield thread, port, errors
        finally:
            thread.run(port.close())
            thread.run(dps.aclose())
            for logger in loggers:
                logger.removeHandler(errors)


async def _async_build() -> tuple[Hubs, DpsService]:
    return build()


def still_serves(port: int) -> None:
    """A real MQTT-over-WebSocket session and a real HTTPS request still work."""

    async def session() -> None:
        peer = await WsPeer.open(ADDRESS, port)
        assert peer.status == 101
        password = HUB_TOKEN.encode()
        username = f"{HUB}/dev-1/?api-version=2021-04-12"
        await peer.send(peer.engine.connect("dev-1", username=username, password=password))
        assert await peer.packets() == [Connack(0)]
        peer.close()

    asyncio.run(session())
    answer = httpx.post(
        f"http://{ADDRESS}:{port}/devices/dev-1/messages/events?api-version=2021-04-12",
        headers={"Authorization": HUB_TOKEN, "Host": HUB},
        content=b"ok",
    )
    assert answer.status_code == 204


def test_arbitrary_frames_after_the_handshake_never_crash_the_port() -> None:
    """Random bytes (frames wsproto must reject, or that parse) and random binary messages (MQTT
    garbage) cost only their own connection."""
    with gateway() as (_, port, errors):

        @SLOW_FUZZ
        @given(raw=st.binary(min_size=1, max_size=200), message=st.binary(max_size=200))
        def example(raw: bytes, message: bytes) -> None:
            async def one() -> None:
                peer = await WsPeer.open(ADDRESS, port.port)
                assert peer.status == 101
                await peer.send(message, pieces=2)
                with contextlib.suppress(ConnectionError):
                    await peer.send_raw(raw)
                with contextlib.suppress(TimeoutError, ConnectionError):
                    await peer.closed(within=0.05)
                peer.close()

            asyncio.run(one())

        example()
        still_serves(port.port)
        assert [record.getMessage() for record in errors.records] == []


def test_arbitrary_http_requests_never_get_a_5xx_from_the_port() -> None:
    """Requests with any path, Host, headers and body, over a real socket: never a 5xx."""
    with gateway() as (_, port, errors), httpx.Client(timeout=5) as client:

        @SLOW_FUZZ
        @given(
            method=methods,
            path=url_paths(["/devices/dev-1/messages/", f"/{SCOPE}/registrations/dev-1/"]),
            query=queries,
            host=st.sampled_from([HUB, DPS_HOST, ADDRESS, "elsewhere.example"]),
            authorization=authorizations,
            body=bodies,
        )
        def example(
            *, method: str, path: str, query: str, host: str, authorization: str | None, body: bytes
        ) -> None:
            headers = headers_with(authorization, {"host": host})
            answer = client.request(
                method,
                f"http://{ADDRESS}:{port.port}{path}{query}",
                headers=headers,
                content=body,
            )
            assert answer.status_code < 500, (answer.status_code, answer.text)

        example()
        still_serves(port.port)
        assert [record.getMessage() for record in errors.records] == []
