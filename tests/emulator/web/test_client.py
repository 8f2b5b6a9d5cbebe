"""Tests for emulator.web.client: the bound on requests in flight, over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from emulator.web.client import HttpClient, PostFailed
from tests.scripted_webhook import ScriptedWebhook


@pytest.fixture
def server() -> Iterator[ScriptedWebhook]:
    """A real HTTP server on a free loopback port; `/slow` answers only once released."""
    with ScriptedWebhook("127.0.0.1") as webhook:
        webhook.stalled.add("/slow")
        webhook.by_path["/slow"] = [(200, {"slow": True})]
        webhook.by_path["/fast"] = [(200, {"fast": True})]
        yield webhook


def test_requests_beyond_the_bound_wait_their_turn(server: ScriptedWebhook) -> None:
    """With two in flight, a third request is sent only when one of them has its answer."""

    async def run() -> list[int]:
        client = HttpClient(timeout=5.0, max_response_bytes=1024, max_in_flight=2)
        try:
            slow = [
                asyncio.create_task(client.post(server.url_for("/slow"), b"{}", {}))
                for _ in range(2)
            ]
            fast = asyncio.create_task(client.post(server.url_for("/fast"), b"{}", {}))
            await asyncio.sleep(0.5)
            sent_while_held = len(server.received)
            server.release.set()
            answers = await asyncio.gather(*slow, fast)
            return [sent_while_held, *(status for status, _ in answers)]
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [2, 200, 200, 200]
    assert [request.path for request in server.received][-1] == "/fast"


async def trickling_server() -> asyncio.Server:
    """An HTTP server whose answer's 20 body bytes come one every 0.05 s (held for about 1 s)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n")
        for _ in range(20):
            await asyncio.sleep(0.05)
            writer.write(b"x")
            await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


def test_no_turn_within_the_timeout_is_a_failure_naming_the_masked_url() -> None:
    """A request that gets no turn within the timeout fails, its URL's key masked; the one
    holding the turn (each read within the timeout) finishes."""

    async def run() -> tuple[str, int]:
        server = await trickling_server()
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        client = HttpClient(timeout=0.3, max_response_bytes=1024, max_in_flight=1)
        try:
            held = asyncio.create_task(client.post(f"{url}/held", b"{}", {}))
            await asyncio.sleep(0.05)
            with pytest.raises(PostFailed) as caught:
                await client.post(f"{url}/waits?code=secret-key", b"{}", {})
            status, _ = await held
            return str(caught.value), status
        finally:
            await client.aclose()
            server.close()

    message, held_status = asyncio.run(run())
    assert "PoolTimeout" in message
    assert "secret-key" not in message
    assert held_status == 200
