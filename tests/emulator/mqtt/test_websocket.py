"""`mqtt.websocket`: MQTT over WebSockets into the same shell, over real sockets.

An `HttpServer` with `MqttWebSocket` as its WebSocket protocol, an `MqttServer` routing to one hub,
and a wsproto client that frames MQTT as the SDKs do, or as they never would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from emulator.endpoints import MqttEndpoint
from emulator.hub.endpoint import Hub
from emulator.mqtt import Connack, Puback, Publish, Suback
from emulator.mqtt.server import MqttServer
from emulator.mqtt.websocket import MqttWebSocket
from emulator.web.server import HttpLimits, HttpServer, bind
from sas import generate_sas_token
from tests.emulator.mqtt.ws_client import WsPeer

ADDRESS = "127.53.1.1"
HUB = "toasters.azure-devices.net"
KEY = "OSANXEslinwdWI7CugTZIIMS97VdG65m3pD753neq7E="
USERNAME = f"{HUB}/dev-001/?api-version=2021-04-12"
TOKEN = generate_sas_token(f"{HUB}/devices/dev-001", KEY, 4_000_000_000).encode()
LIMITS = HttpLimits(max_connections_per_peer=2, header_timeout=2)


async def plain(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await PlainTextResponse("plain http")(scope, receive, send)


class Gate:
    """A journal whose entries become durable only when the test says so."""

    def __init__(self) -> None:
        self.durable = 0
        self.appended = 0
        self._released = asyncio.Event()

    def pending(self) -> int | None:
        return self.appended if self.appended > self.durable else None

    async def wait(self, seq: int) -> None:
        await self._released.wait()
        self.durable = max(self.durable, seq)

    def release(self) -> None:
        self.durable = self.appended
        self._released.set()


@asynccontextmanager
async def serving(
    hub: Hub, *, durability: Gate | None = None, **options: float
) -> AsyncIterator[int]:
    def route(username: str) -> MqttEndpoint | None:
        return hub if username.startswith(f"{HUB}/") else None

    mqtt = MqttServer(
        router=route, ssl_context=None, host=ADDRESS, port=0, durability=durability, **options
    )  # type: ignore[arg-type]
    protocol = type("TestMqttWebSocket", (MqttWebSocket,), {"mqtt": mqtt})
    server = HttpServer(plain, sockets=[bind(ADDRESS, 0)], limits=LIMITS, websocket=protocol)
    await server.start()
    try:
        yield server.ports[0]
    finally:
        await server.close()


def make_hub() -> Hub:
    hub = Hub(HUB)
    hub.upsert_device("dev-001", primary_key=KEY, secondary_key=KEY, twin=None, now=0)
    return hub


def run(scenario: Callable[[int, Hub], Awaitable[None]], **options: object) -> None:
    async def main() -> None:
        hub = make_hub()
        async with serving(hub, **options) as port:  # type: ignore[arg-type]
            await scenario(port, hub)

    asyncio.run(main())


async def connected(port: int) -> WsPeer:
    peer = await WsPeer.open(ADDRESS, port)
    assert (peer.status, peer.subprotocol) == (101, "mqtt")
    await peer.send(peer.engine.connect("dev-001", username=USERNAME, password=TOKEN))
    assert await peer.packets() == [Connack(0)]
    return peer


def test_a_device_session_over_websocket_frames_split_anywhere() -> None:
    """CONNECT split over three frames, SUBSCRIBE and PUBLISH in one: CONNACK, SUBACK, PUBACK,
    and the telemetry reaches the hub as over TLS."""

    async def scenario(port: int, hub: Hub) -> None:
        peer = await WsPeer.open(ADDRESS, port)
        assert (peer.status, peer.subprotocol) == (101, "mqtt")
        connect = peer.engine.connect("dev-001", username=USERNAME, password=TOKEN)
        await peer.send(connect, pieces=3)
        assert await peer.packets() == [Connack(0)]
        both = peer.engine.subscribe("$iothub/twin/res/#") + peer.engine.publish(
            "devices/dev-001/messages/events/color=red", b"21.5"
        )
        await peer.send(both)
        assert await peer.packets(2) == [Suback(1, (1,)), Puback(2)]
        (message,) = hub.messages
        assert (message.body, message.properties) == (b"21.5", {"color": "red"})
        await peer.ping()
        assert await peer.quiet(0.2)
        assert peer.pongs == 1
        peer.close()

    run(scenario)


def test_twin_responses_come_back_over_the_websocket() -> None:
    """A twin GET is answered on the same WebSocket, as a server PUBLISH."""

    async def scenario(port: int, hub: Hub) -> None:
        peer = await connected(port)
        await peer.send(peer.engine.subscribe("$iothub/twin/res/#"))
        await peer.packets()
        await peer.send(peer.engine.publish("$iothub/twin/GET/?$rid=1", b"", qos=0))
        (answer,) = await peer.packets()
        assert isinstance(answer, Publish)
        assert answer.topic == "$iothub/twin/res/200/?$rid=1"
        peer.close()

    run(scenario)


@pytest.mark.parametrize(
    ("path", "subprotocols", "status"),
    [
        ("/mqtt", ("mqtt",), 404),
        ("/$iothub/websocket", (), 400),
        ("/$iothub/websocket", ("mqttv3.1",), 400),
    ],
)
def test_handshakes_the_hub_would_refuse(
    path: str, subprotocols: tuple[str, ...], status: int
) -> None:
    """Another path is 404, no `mqtt` subprotocol 400, each saying what was expected."""

    async def scenario(port: int, hub: Hub) -> None:
        peer = await WsPeer.open(ADDRESS, port, path=path, subprotocols=subprotocols)
        assert peer.status == status
        assert b"/$iothub/websocket" in peer.reject_body or b"mqtt" in peer.reject_body
        assert await peer.closed()
        peer.close()

    run(scenario)


def test_a_text_frame_closes_the_connection_with_1003() -> None:
    """MQTT travels in binary frames (MQTT 3.1.1 §6.0): a text frame closes the connection."""

    async def scenario(port: int, hub: Hub) -> None:
        peer = await connected(port)
        await peer.send_text("hello")
        assert await peer.closed()
        assert peer.close_code == 1003
        await asyncio.sleep(0.05)
        assert not hub.is_connected("dev-001")
        peer.close()

    run(scenario)


def test_an_acknowledgement_waits_for_the_journal() -> None:
    """With a change not yet on disk, the PUBACK is held until the journal says it is durable,
    exactly as on the TLS listener: the shell is one for both transports."""
    gate = Gate()

    async def scenario(port: int, hub: Hub) -> None:
        peer = await connected(port)
        gate.appended = 1  # a change is in the journal, not yet synced
        await peer.send(peer.engine.publish("devices/dev-001/messages/events/", b"x"))
        assert await peer.quiet(0.3)
        gate.release()
        assert await peer.packets() == [Puback(1)]
        peer.close()

    run(scenario, durability=gate)


def test_upgraded_connections_leave_the_http_count() -> None:
    """WebSocket connections are not HTTP connections of their address: with a cap of two HTTP
    connections per address, three open WebSockets still leave room for a plain request."""

    async def scenario(port: int, hub: Hub) -> None:
        peers = [await WsPeer.open(ADDRESS, port) for _ in range(3)]
        assert [peer.status for peer in peers] == [101, 101, 101]
        reader, writer = await asyncio.open_connection(ADDRESS, port)
        writer.write(f"GET / HTTP/1.1\r\nHost: {ADDRESS}\r\n\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(5):
            answer = await reader.read(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        assert answer.endswith(b"plain http")
        writer.close()
        for peer in peers:
            peer.close()

    run(scenario)


def test_a_silent_websocket_meets_the_connect_deadline() -> None:
    """After the handshake, the MQTT rules hold: no CONNECT in time, the connection is closed."""

    async def scenario(port: int, hub: Hub) -> None:
        peer = await WsPeer.open(ADDRESS, port)
        assert peer.status == 101
        assert await peer.closed(within=3)
        peer.close()

    run(scenario, connect_timeout=0.5)


def test_stopping_the_server_ends_websocket_sessions() -> None:
    """Closing the HTTP server closes its WebSockets, and the hub hears the device went."""

    async def main() -> None:
        hub = make_hub()
        async with serving(hub) as port:
            peer = await connected(port)
            assert hub.is_connected("dev-001")
        assert await peer.closed()
        peer.close()
        await asyncio.sleep(0.1)
        assert not hub.is_connected("dev-001")

    asyncio.run(main())
