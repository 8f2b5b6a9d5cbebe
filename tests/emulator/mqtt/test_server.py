"""The asyncio shell over real TLS sockets: routing, hub traffic, and one bad client at a time."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from emulator.certs import ensure_certificates, server_ssl_context
from emulator.endpoints import Close, MqttEndpoint, Send
from emulator.hub.endpoint import Hub
from emulator.mqtt import Connack, Disconnect, Puback, Publish, Suback, encode
from emulator.mqtt.server import MqttServer
from sas import generate_sas_token
from tests.emulator.mqtt.client_engine import ClientEngine

ADDRESS = "127.42.200.1"
HUB = "toasters.azure-devices.net"
KEY = "OSANXEslinwdWI7CugTZIIMS97VdG65m3pD753neq7E="
USERNAME = f"{HUB}/dev-001/?api-version=2019-10-01"


def token() -> bytes:
    return generate_sas_token(f"{HUB}/devices/dev-001", KEY, 4_000_000_000).encode()


class Peer:
    """A TLS 1.2 client socket driven by the tiny client engine."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.engine = reader, writer, ClientEngine()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def packets(self, count: int = 1) -> list[object]:
        got: list[object] = []
        async with asyncio.timeout(5):
            while len(got) < count:
                data = await self.reader.read(65536)
                assert data, f"connection closed after {got}"
                got += self.engine.receive_data(data)
        return got

    async def closed_by_server(self, within: float = 5) -> bool:
        try:
            async with asyncio.timeout(within):
                while await self.reader.read(65536):
                    pass
        except (ConnectionError, ssl.SSLError):
            return True
        return True


Scenario = Callable[[Callable[[], Awaitable[Peer]], Hub], Awaitable[None]]


def run(
    tmp_path: Path,
    scenario: Scenario,
    *,
    router_extra: MqttEndpoint | None = None,
    **server_options: float,
) -> None:
    """Start a server with one hub holding dev-001, run `scenario`, stop the server."""
    paths = ensure_certificates(tmp_path, names=[ADDRESS, HUB])
    hub = Hub(HUB, clock=time.time)  # the server stamps CONNECTs with the wall clock too
    hub.upsert_device("dev-001", primary_key=KEY, secondary_key=KEY, twin=None, now=0)

    def route(username: str) -> MqttEndpoint | None:
        if username.startswith("explode/"):
            return router_extra
        return hub if username.startswith(f"{HUB}/") else None

    async def main() -> None:
        server = MqttServer(
            router=route,
            ssl_context=server_ssl_context(paths),
            host=ADDRESS,
            port=0,
            **server_options,
        )  # type: ignore[arg-type]
        await server.start()
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # as the Python SDK
        client_ctx.load_verify_locations(cafile=paths.ca_cert)
        peers: list[Peer] = []

        async def open_peer() -> Peer:
            reader, writer = await asyncio.open_connection(ADDRESS, server.port, ssl=client_ctx)
            peers.append(Peer(reader, writer))
            return peers[-1]

        try:
            await scenario(open_peer, hub)
        finally:
            for peer in peers:
                peer.writer.close()
            await server.close()

    asyncio.run(main())


async def connected(open_peer: Callable[[], Awaitable[Peer]]) -> Peer:
    """dev-001 connected with CleanSession 0 (Session Present when it connected before)."""
    peer = await open_peer()
    await peer.send(peer.engine.connect("dev-001", username=USERNAME, password=token()))
    [connack] = await peer.packets()
    assert isinstance(connack, Connack)
    assert connack.return_code == 0
    return peer


def test_device_session_over_tls(tmp_path: Path) -> None:
    """CONNECT, SUBSCRIBE, twin GET and a desired push travel over TLS 1.2 as the SDK expects."""

    async def scenario(open_peer: Callable[[], Awaitable[Peer]], hub: Hub) -> None:
        peer = await connected(open_peer)
        await peer.send(peer.engine.subscribe("$iothub/twin/PATCH/properties/desired/#"))
        assert await peer.packets() == [Suback(1, (1,))]
        await peer.send(peer.engine.subscribe("$iothub/twin/res/#"))
        assert await peer.packets() == [Suback(2, (1,))]
        await peer.send(peer.engine.publish("$iothub/twin/GET/?$rid=r1", b" "))
        puback, response = await peer.packets(2)
        assert isinstance(puback, Puback)
        assert isinstance(response, Publish)
        assert (response.topic, response.qos) == ("$iothub/twin/res/200/?$rid=r1", 0)
        assert json.loads(response.payload)["desired"] == {"$version": 1}
        hub.update_desired("dev-001", {"fan": "high"}, now=1)
        [push] = await peer.packets()
        assert isinstance(push, Publish)
        assert (push.topic, push.qos) == ("$iothub/twin/PATCH/properties/desired/?$version=2", 0)
        await peer.send(encode(Disconnect()))
        assert await peer.closed_by_server()
        assert not hub.is_connected("dev-001")

    run(tmp_path, scenario)


def test_unroutable_username_and_bad_token_get_connack_5(tmp_path: Path) -> None:
    """A username no endpoint claims, or a wrong token, is refused with CONNACK 5 and closed."""

    async def scenario(open_peer: Callable[[], Awaitable[Peer]], hub: Hub) -> None:
        for username, password in (("nobody/dev-001/?x", token()), (USERNAME, b"SharedAccess")):
            peer = await open_peer()
            await peer.send(peer.engine.connect("dev-001", username=username, password=password))
            assert await peer.packets() == [Connack(5)]
            assert await peer.closed_by_server()

    run(tmp_path, scenario)


@pytest.mark.parametrize(
    "garbage",
    [b"\x36\x04\x00\x01a\x00", b"\x34\x05\x00\x01a\x00\x01", b"\x30\xff\xff\x7f", b"\x10\x00"],
    ids=["qos3", "qos2", "oversized", "second-connect"],
)
def test_bad_packet_costs_only_that_connection(tmp_path: Path, garbage: bytes) -> None:
    """Malformed, QoS 2, oversized or out-of-order packets close one client; others carry on."""

    async def scenario(open_peer: Callable[[], Awaitable[Peer]], hub: Hub) -> None:
        bad = await connected(open_peer)
        hub.upsert_device("dev-002", primary_key=KEY, secondary_key=KEY, twin=None, now=0)
        await bad.send(garbage)
        assert await bad.closed_by_server()
        good = await connected(open_peer)
        await good.send(
            good.engine.subscribe("$iothub/twin/res/#")
            + good.engine.publish("$iothub/twin/GET/?$rid=r", b" ")
        )
        assert len(await good.packets(3)) == 3

    run(tmp_path, scenario, max_packet_size=1000)


def test_silent_client_is_closed_after_the_connect_timeout(tmp_path: Path) -> None:
    """A client that never sends CONNECT is dropped after connect_timeout."""

    async def scenario(open_peer: Callable[[], Awaitable[Peer]], hub: Hub) -> None:
        peer = await open_peer()
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await peer.closed_by_server(within=3)
        assert 0.2 <= loop.time() - started < 3

    run(tmp_path, scenario, connect_timeout=0.3)


def test_keep_alive_is_enforced(tmp_path: Path) -> None:
    """A connected client silent for 1.5 x keep-alive is disconnected; PINGREQ keeps it alive."""

    async def scenario(open_peer: Callable[[], Awaitable[Peer]], hub: Hub) -> None:
        peer = await open_peer()
        await peer.send(
            peer.engine.connect("dev-001", username=USERNAME, password=token(), keep_alive=1)
        )
        assert await peer.packets() == [Connack(0)]
        for _ in range(3):
            await asyncio.sleep(0.5)
            await peer.send(b"\xc0\x00")
            assert len(await peer.packets()) == 1  # PINGRESP
        assert hub.is_connected("dev-001")
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await peer.closed_by_server(within=4)
        assert 1.2 <= loop.time() - started < 4
        assert not hub.is_connected("dev-001")

    run(tmp_path, scenario)


class Exploding:
    """An endpoint whose publish handler raises, to show the shell contains the failure."""

    def connect(
        self,
        *,
        client_id: str,
        username: str,
        password: bytes | None,
        send: Send,
        close: Close,
        now: float,
        clean_session: bool = True,
    ) -> int:
        return 0

    def publish(
        self, *, client_id: str, topic: str, payload: bytes, send: Send, now: float
    ) -> None:
        raise RuntimeError("endpoint bug")

    def subscribe(self, *, client_id: str, topic_filter: str, qos: int = 1) -> bool:
        return False

    def unsubscribe(self, *, client_id: str, topic_filter: str) -> None:
        return None

    def disconnect(self, *, client_id: str) -> None:
        return None


def test_endpoint_exception_closes_only_that_connection(tmp_path: Path) -> None:
    """An endpoint that raises costs its client the connection, and the server keeps serving."""

    async def scenario(open_peer: Callable[[], Awaitable[Peer]], hub: Hub) -> None:
        victim = await open_peer()
        await victim.send(victim.engine.connect("x", username="explode/x", password=b"p"))
        assert await victim.packets() == [Connack(0)]
        await victim.send(victim.engine.publish("anything", b"x"))
        assert await victim.closed_by_server()
        survivor = await connected(open_peer)
        await survivor.send(survivor.engine.subscribe("$iothub/methods/POST/#"))
        assert await survivor.packets() == [Suback(1, (1,))]

    run(tmp_path, scenario, router_extra=Exploding())


def test_newer_connection_replaces_older(tmp_path: Path) -> None:
    """A second CONNECT for the same device closes the first connection."""

    async def scenario(open_peer: Callable[[], Awaitable[Peer]], hub: Hub) -> None:
        first = await connected(open_peer)
        second = await connected(open_peer)
        assert await first.closed_by_server()
        await second.send(
            second.engine.subscribe("$iothub/twin/res/#")
            + second.engine.publish("$iothub/twin/GET/?$rid=r", b" ")
        )
        assert len(await second.packets(3)) == 3
        assert hub.is_connected("dev-001")

    run(tmp_path, scenario)


def test_puback_of_a_c2d_message_takes_it_off_the_queue_and_clean_session_is_honoured(
    tmp_path: Path,
) -> None:
    """Over TLS: Session Present follows the kept session; a QoS 1 C2D PUBLISH stays queued until
    its PUBACK and is sent again to the next connection when the first never acknowledged it;
    a CleanSession 1 CONNECT answers Session Present 0."""

    async def scenario(open_peer: Callable[[], Awaitable[Peer]], hub: Hub) -> None:
        first = await open_peer()
        await first.send(first.engine.connect("dev-001", username=USERNAME, password=token()))
        assert await first.packets() == [Connack(0, session_present=False)]
        await first.send(first.engine.subscribe("devices/+/messages/devicebound/#"))
        assert await first.packets() == [Suback(1, (1,))]
        hub.send_c2d("dev-001", b"keep me", message_id="m-1")
        [unacknowledged] = await first.packets()
        assert isinstance(unacknowledged, Publish)
        assert unacknowledged.qos == 1
        first.writer.close()  # gone without a PUBACK
        async with asyncio.timeout(5):
            while hub.is_connected("dev-001"):
                await asyncio.sleep(0.01)
        assert [m.message_id for m in hub.c2d_queue("dev-001")] == ["m-1"]
        second = await open_peer()
        await second.send(second.engine.connect("dev-001", username=USERNAME, password=token()))
        connack, again = await second.packets(2)
        assert connack == Connack(0, session_present=True)
        assert isinstance(again, Publish)
        assert (again.payload, again.qos) == (b"keep me", 1)
        assert again.packet_id is not None
        await second.send(second.engine.puback(again.packet_id))
        async with asyncio.timeout(5):
            while hub.c2d_queue("dev-001"):
                await asyncio.sleep(0.01)
        clean = await open_peer()
        await clean.send(
            clean.engine.connect("dev-001", username=USERNAME, password=token(), clean_session=True)
        )
        assert await clean.packets() == [Connack(0, session_present=False)]
        assert hub.subscriptions("dev-001") == set()

    run(tmp_path, scenario)
