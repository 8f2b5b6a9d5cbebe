"""`emulator.web.server`: the limits every HTTP listener of the emulator shares, over real sockets.

A trivial ASGI app behind `Limits` on an `HttpServer`, reached with raw sockets (so a test can
send what no HTTP client would: a header a byte at a time, an oversized header section, a body
that never finishes).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from emulator.web.server import HttpLimits, HttpServer, Limits, bind

LIMITS = HttpLimits(
    max_header_bytes=1024,
    max_body_bytes=2048,
    header_timeout=0.5,
    body_timeout=0.5,
    idle_timeout=5,
    max_connections_per_peer=3,
)


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await Response(content=b"got %d" % len(body))(scope, receive, send)


def error(status: int, code: str, text: str) -> Response:
    return JSONResponse({"error": code, "message": text}, status_code=status)


@asynccontextmanager
async def serving(limits: HttpLimits = LIMITS) -> AsyncIterator[int]:
    server = HttpServer(
        Limits(echo, limits=limits, error=error), sockets=[bind("127.0.0.1", 0)], limits=limits
    )
    await server.start()
    try:
        yield server.ports[0]
    finally:
        await server.close()


async def exchange(port: int, request: bytes, *, read_for: float = 3.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = b""
    try:
        async with asyncio.timeout(read_for):
            while chunk := await reader.read(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and b"connection: close" not in answer.lower():
                    break
    except TimeoutError:
        pass
    writer.close()
    return answer


def run(test: Callable[[], object]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20))  # type: ignore[arg-type]


def test_a_plain_request_is_answered() -> None:
    async def test() -> None:
        async with serving() as port:
            answer = await exchange(
                port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            )
            assert answer.startswith(b"HTTP/1.1 200 ")
            assert answer.endswith(b"got 5")

    run(test)


def test_a_websocket_upgrade_is_plain_http_on_a_server_without_websockets() -> None:
    """The service API, operator API and Functions host take no WebSockets: an upgrade request
    is answered as the plain request it also is (wsproto being installed changes nothing)."""

    async def test() -> None:
        async with serving() as port:
            answer = await exchange(
                port,
                b"GET /$iothub/websocket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
            )
            assert answer.startswith(b"HTTP/1.1 200 ")
            assert answer.endswith(b"got 0")

    run(test)


def test_header_section_too_large_is_431() -> None:
    async def test() -> None:
        async with serving() as port:
            big = b"X-Filler: " + b"a" * 1500 + b"\r\n"
            answer = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
            assert b"HeadersTooLarge" in answer

    run(test)


def test_declared_body_too_large_is_413_before_it_is_sent() -> None:
    async def test() -> None:
        async with serving() as port:
            answer = await exchange(
                port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n"
            )
            assert answer.startswith(b"HTTP/1.1 413 "), answer[:80]

    run(test)


def test_a_body_method_without_a_length_is_411() -> None:
    """POST without Content-Length or Transfer-Encoding: 411; with `Content-Length: 0`, served."""

    async def test() -> None:
        async with serving() as port:
            answer = await exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 411 "), answer[:80]
            answer = await exchange(port, b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]
            answer = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]

    run(test)


def test_chunked_body_too_large_is_413() -> None:
    async def test() -> None:
        async with serving() as port:
            chunk = b"800\r\n" + b"b" * 0x800 + b"\r\n"
            request = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            answer = await exchange(port, request + chunk * 3 + b"0\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 413 "), answer[:80]

    run(test)


def test_header_trickled_a_byte_at_a_time_is_cut_off() -> None:
    """Slowloris: each byte arrives well inside any idle timeout, the whole never does."""

    async def test() -> None:
        async with serving() as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 100
            closed_after = None
            for index, byte in enumerate(request):
                try:
                    writer.write(bytes([byte]))
                    await writer.drain()
                except ConnectionError:
                    closed_after = index
                    break
                await asyncio.sleep(0.05)
                if await _closed(reader):
                    closed_after = index
                    break
            writer.close()
            # 0.5 s allowed; 0.05 s a byte: cut off after about 10 bytes, long before 130
            assert closed_after is not None
            assert closed_after < 40, closed_after

    run(test)


async def _closed(reader: asyncio.StreamReader) -> bool:
    try:
        async with asyncio.timeout(0.001):
            return await reader.read(1) == b""
    except TimeoutError:
        return False


def test_body_trickled_is_408() -> None:
    async def test() -> None:
        async with serving() as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            answer = b""
            for _ in range(60):
                writer.write(b"z")
                await writer.drain()
                try:
                    async with asyncio.timeout(0.05):
                        answer += await reader.read(4096)
                except TimeoutError:
                    continue
                if answer:
                    break
            writer.close()
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]

    run(test)


def test_connections_per_address_are_capped() -> None:
    async def test() -> None:
        async with serving() as port:
            held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            async with asyncio.timeout(3):
                assert await reader.read(1) == b""  # closed at once
            writer.close()
            # the three within the cap are served
            for held_reader, held_writer in held:
                held_writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                async with asyncio.timeout(3):
                    assert (await held_reader.readline()).startswith(b"HTTP/1.1 200 ")
                held_writer.close()

    run(test)


def test_close_does_not_wait_for_idle_or_stuck_clients() -> None:
    async def test() -> None:
        loop = asyncio.get_running_loop()
        async with serving() as port:
            idle = await asyncio.open_connection("127.0.0.1", port)
            half = await asyncio.open_connection("127.0.0.1", port)
            half[1].write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
            await asyncio.sleep(0.1)
            started = loop.time()
        assert loop.time() - started < 3
        for reader, writer in (idle, half):
            async with asyncio.timeout(3):
                await reader.read()  # the server ended the connection
            writer.close()

    run(test)


def test_responses_are_not_delayed_by_nagle() -> None:
    """Listening sockets say TCP, so asyncio disables Nagle's algorithm on every accepted socket
    (with proto 0 it did not, and each response waited ~40 ms for the client's delayed ACK)."""

    async def test() -> None:
        listener = bind("127.0.0.1", 0)
        assert listener.proto == socket.IPPROTO_TCP
        accepted: list[asyncio.Transport] = []

        class Keep(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted.append(transport)  # type: ignore[arg-type]

        server = await asyncio.get_running_loop().create_server(Keep, sock=listener)
        _, writer = await asyncio.open_connection("127.0.0.1", listener.getsockname()[1])
        async with asyncio.timeout(3):
            while not accepted:
                await asyncio.sleep(0.01)
        sock = accepted[0].get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        writer.close()
        accepted[0].close()
        server.close()

    run(test)
