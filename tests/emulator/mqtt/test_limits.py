"""Per-connection limits of the MQTT shell over real TLS: deadlines bytes cannot stretch, and a
cap on connections from one address.

Reuses the TLS scenario runner of test_server.py (its own loopback address, port 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

from emulator.hub.endpoint import Hub
from emulator.mqtt import Connack
from sas import generate_sas_token
from tests.emulator.mqtt.test_server import HUB, KEY, USERNAME, Peer, run, token
from tests.emulator.mqtt.test_server_stalls import twin_answered

CONNECT_TIMEOUT = 0.5
KEEP_ALIVE = 1  # seconds, as the CONNECT carries it: the server waits 1.5 x this


class Trickle:
    """Bytes sent one at a time, `gap` seconds apart, until all are out or the connection fails."""

    def __init__(self, peer: Peer, data: bytes, gap: float) -> None:
        self.peer, self.data, self.gap = peer, data, gap
        self.sent = 0

    async def run(self) -> None:
        """Send until done; a connection the server closed ends the trickle quietly."""
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            for byte in self.data:
                await self.peer.send(bytes([byte]))
                self.sent += 1
                await asyncio.sleep(self.gap)


async def closed_while_trickling(peer: Peer, data: bytes, gap: float, within: float) -> int:
    """Trickle `data` into `peer` until the server closes the connection (TimeoutError if it
    is still open after `within` seconds); return how many bytes went out."""
    trickle = Trickle(peer, data, gap)
    trickling = asyncio.create_task(trickle.run())
    try:
        assert await peer.closed_by_server(within=within)
    finally:
        trickling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await trickling
    return trickle.sent


async def connected_device(
    open_peer: Callable[[], Awaitable[Peer]], hub: Hub, device_id: str
) -> Peer:
    """A new connection for `device_id` (created on the hub if need be), CONNACK 0 received."""
    if hub.device(device_id) is None:
        hub.upsert_device(device_id, primary_key=KEY, secondary_key=KEY, twin=None, now=0)
    peer = await open_peer()
    password = generate_sas_token(f"{HUB}/devices/{device_id}", KEY, 4_000_000_000).encode()
    await peer.send(
        peer.engine.connect(
            device_id, username=f"{HUB}/{device_id}/?api-version=2019-10-01", password=password
        )
    )
    assert await peer.packets() == [Connack(0)]
    return peer


def test_a_connect_trickled_byte_by_byte_is_closed_at_the_connect_deadline(
    tmp_path: Path,
) -> None:
    """A CONNECT sent one byte every 0.1 s is cut off connect_timeout after the connection."""

    async def scenario(open_peer: Callable[[], Awaitable[Peer]], hub: Hub) -> None:
        peer = await open_peer()
        loop = asyncio.get_running_loop()
        started = loop.time()
        connect = peer.engine.connect("dev-001", username=USERNAME, password=token())
        sent = await closed_while_trickling(peer, connect, gap=0.1, within=3)
        elapsed = loop.time() - started
        assert CONNECT_TIMEOUT - 0.1 <= elapsed < CONNECT_TIMEOUT + 1
        assert sent < len(connect)
        assert not hub.is_connected("dev-001")

    run(tmp_path, scenario, connect_timeout=CONNECT_TIMEOUT)


def test_keep_alive_counts_complete_packets_not_bytes(tmp_path: Path) -> None:
    """After CONNECT, a PUBLISH trickled one byte every 0.25 s is closed 1.5 x keep-alive on."""

    async def scenario(open_peer: Callable[[], Awaitable[Peer]], hub: Hub) -> None:
        peer = await open_peer()
        await peer.send(
            peer.engine.connect(
                "dev-001", username=USERNAME, password=token(), keep_alive=KEEP_ALIVE
            )
        )
        assert await peer.packets() == [Connack(0)]
        loop = asyncio.get_running_loop()
        started = loop.time()
        publish = peer.engine.publish("devices/dev-001/messages/events/", b"x" * 40)
        sent = await closed_while_trickling(peer, publish, gap=0.25, within=4)
        elapsed = loop.time() - started
        assert 1.5 * KEEP_ALIVE - 0.3 <= elapsed < 1.5 * KEEP_ALIVE + 1
        assert sent < len(publish)
        assert not hub.is_connected("dev-001")
        assert hub.messages_received == 0

    run(tmp_path, scenario)


def test_connections_past_the_cap_per_address_are_closed_at_once(tmp_path: Path) -> None:
    """With a cap of 3, a 4th connection from the address is closed while the 3 are served;
    once one of them ends, a new connection is accepted."""

    async def scenario(open_peer: Callable[[], Awaitable[Peer]], hub: Hub) -> None:
        first_three = [
            await connected_device(open_peer, hub, f"dev-00{number}") for number in (1, 2, 3)
        ]
        loop = asyncio.get_running_loop()
        extra = await open_peer()
        started = loop.time()
        assert await extra.closed_by_server(within=3)
        assert loop.time() - started < 1
        for peer in first_three:
            assert await twin_answered(peer)
        assert all(hub.is_connected(f"dev-00{number}") for number in (1, 2, 3))

        first_three[0].writer.close()
        async with asyncio.timeout(5):
            while hub.is_connected("dev-001"):
                await asyncio.sleep(0.01)
        replacement = await connected_device(open_peer, hub, "dev-004")
        assert await twin_answered(replacement)

    run(tmp_path, scenario, max_connections_per_address=3)
