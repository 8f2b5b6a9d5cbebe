"""Stalling clients over real TLS: one that stops reading, one that stops mid-packet, and PINGREQ.

Each costs only its own connection while another device on the same server is served meanwhile.
Reuses the TLS scenario runner of test_server.py (its own loopback address, port 0).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from emulator.hub.endpoint import Hub
from emulator.mqtt import Connack, Pingresp, Publish, Suback
from sas import generate_sas_token
from tests.emulator.mqtt.test_server import HUB, KEY, USERNAME, Peer, connected, run, token

OTHER = "dev-002"
PINGREQ = b"\xc0\x00"


async def other_device(open_peer: Callable[[], Awaitable[Peer]], hub: Hub) -> Peer:
    """A second device, connected: the bystander that must keep being served."""
    hub.upsert_device(OTHER, primary_key=KEY, secondary_key=KEY, twin=None, now=0)
    peer = await open_peer()
    password = generate_sas_token(f"{HUB}/devices/{OTHER}", KEY, 4_000_000_000).encode()
    await peer.send(
        peer.engine.connect(
            OTHER, username=f"{HUB}/{OTHER}/?api-version=2019-10-01", password=password
        )
    )
    assert await peer.packets() == [Connack(0)]
    return peer


async def twin_answered(peer: Peer) -> bool:
    """Twin GET on `peer` (after subscribing to the responses) gets its 200 response."""
    await peer.send(
        peer.engine.subscribe("$iothub/twin/res/#")
        + peer.engine.publish("$iothub/twin/GET/?$rid=stall", b" ")
    )
    replies = await peer.packets(3)  # SUBACK, PUBACK, the response
    return any(
        isinstance(reply, Publish) and reply.topic == "$iothub/twin/res/200/?$rid=stall"
        for reply in replies
    )


def test_client_that_stops_reading_is_closed_while_others_are_served(tmp_path: Path) -> None:
    """A subscriber that never reads is dropped once its write buffer passes the limit."""

    async def scenario(open_peer: Callable[[], Awaitable[Peer]], hub: Hub) -> None:
        bystander = await other_device(open_peer, hub)
        stalled = await connected(open_peer)
        await stalled.send(stalled.engine.subscribe("$iothub/methods/POST/#"))
        assert await stalled.packets() == [Suback(1, (1,))]
        payload = "x" * (200 * 1024)
        sent = 0
        # Loopback socket buffers absorb a few MB before the transport's own buffer grows.
        # Method requests (QoS 0, never queued) keep coming however many are unanswered.
        while hub.is_connected("dev-001") and sent < 400:
            hub.invoke_method("dev-001", "flood", payload, on_response=lambda _: None)
            sent += 1
            await asyncio.sleep(0)
        assert sent < 400, "the server kept writing to a client that does not read"
        assert await stalled.closed_by_server()
        assert await twin_answered(bystander)

    run(tmp_path, scenario, max_write_buffer=256 * 1024)


def test_client_that_stops_mid_packet_is_closed_by_keep_alive(tmp_path: Path) -> None:
    """Half a PUBLISH and then silence ends that connection after 1.5 x keep-alive, no sooner."""

    async def scenario(open_peer: Callable[[], Awaitable[Peer]], hub: Hub) -> None:
        bystander = await other_device(open_peer, hub)
        stalled = await open_peer()
        await stalled.send(
            stalled.engine.connect("dev-001", username=USERNAME, password=token(), keep_alive=1)
        )
        assert await stalled.packets() == [Connack(0)]
        await stalled.send(stalled.engine.publish("devices/dev-001/messages/events/", b"x")[:4])
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await twin_answered(bystander)
        assert hub.is_connected("dev-001")
        assert await stalled.closed_by_server(within=4)
        assert 1.2 <= loop.time() - started < 4
        assert not hub.is_connected("dev-001")
        assert await twin_answered(bystander)

    run(tmp_path, scenario)


def test_pingreq_is_answered_with_pingresp(tmp_path: Path) -> None:
    """PINGREQ gets exactly one PINGRESP, and the session goes on afterwards."""

    async def scenario(open_peer: Callable[[], Awaitable[Peer]], hub: Hub) -> None:
        peer = await connected(open_peer)
        await peer.send(PINGREQ)
        assert await peer.packets() == [Pingresp()]
        await peer.send(PINGREQ + PINGREQ)
        assert await peer.packets(2) == [Pingresp(), Pingresp()]
        assert await twin_answered(peer)
        assert hub.is_connected("dev-001")

    run(tmp_path, scenario)
