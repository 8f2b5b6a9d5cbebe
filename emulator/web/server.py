"""The emulator's HTTP servers: ASGI applications (Starlette) served by uvicorn over h11.

Every HTTP(S) listener of the emulator runs here: each hub's service REST API, the operator API,
the local Functions host and the web console. `HttpServer` binds its sockets itself (so a port in
use is an `OSError` the caller names, and port 0 resolves before anything says ready), serves one
ASGI app on all of them on the emulator's event loop, with TLS when given an `ssl.SSLContext`, and
stops without waiting for slow or idle clients.

Limits, the same for every listener, so that one client never stops a server or starves others:

- HTTP that h11 cannot parse: 400 from uvicorn, connection closed.
- A request's header section larger than `max_header_bytes`: 431 (`Limits`); beyond four times
  that, h11 gives up first: 400.
- A body larger than `max_body_bytes`: 413, before the app reads it.
- A POST, PUT or PATCH with neither `Content-Length` nor `Transfer-Encoding`: 411, as Azure's
  front ends answer (HTTP clients send `Content-Length: 0` for an empty body).
- The request line and headers must arrive within `header_timeout` seconds of the connection
  (or of the previous response), and the body within `body_timeout` of the headers, however slowly
  the bytes trickle in: a client that sends one byte at a time is closed (or answered 408). Once
  the body is in, an answer may take as long as it needs (a long poll, the console's event stream).
- An idle keep-alive connection is closed after `idle_timeout`; a TLS handshake that does not
  finish in `handshake_timeout` is dropped.
- At most `max_connections_per_peer` connections from one address: more are closed at once.

WebSocket upgrades go to the asyncio protocol a server is given as `websocket` (the HTTPS port's
MQTT over WebSockets, `mqtt.websocket`); a server without one answers them as plain HTTP
requests. An upgraded connection leaves this module's per-address count and deadlines: its
protocol's own rules take over.

What answers look like for the limits is the app's (`Limits` takes its `error` builder): IoT Hub's
error body on the service API, `{"error": ...}` on the operator API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import h11
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn import Config, Server
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HttpLimits", "HttpServer", "Limits", "bind"]

log = logging.getLogger(__name__)

ErrorBuilder = Callable[[int, str, str], Response]
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
SHUTDOWN_GRACE = 1.0  # seconds a response in progress may take to finish when the server stops


@dataclass(frozen=True, kw_only=True)
class HttpLimits:
    """The limits of one server (see the module docstring)."""

    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 256 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 120.0
    handshake_timeout: float = 10.0
    max_connections_per_peer: int = 256


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host:port` (`OSError` when it cannot be had)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: accepted sockets inherit it, and asyncio turns Nagle's algorithm
    # off only for sockets that say TCP; with it on, each response waited ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Limits:
    """ASGI middleware: header section and body size, and the body's deadline."""

    def __init__(self, app: ASGIApp, *, limits: HttpLimits, error: ErrorBuilder) -> None:
        self._app = app
        self._limits = limits
        self._error = error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        limits = self._limits
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        if sum(len(name) + len(value) + 4 for name, value in headers) > limits.max_header_bytes:
            await self._refuse(431, "HeadersTooLarge", "header section too large", scope, send)
            return
        named = dict(headers)
        declared = named.get(b"content-length")
        if (
            scope.get("method") in _BODY_METHODS
            and declared is None
            and b"transfer-encoding" not in named
        ):
            await self._refuse(411, "LengthRequired", "Content-Length required", scope, send)
            return
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
            await self._refuse(413, "MessageTooLarge", "body too large", scope, send)
            return
        received = 0
        body_done = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limits.body_timeout

        async def bounded_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # waiting for the client to go (a stream): no body deadline any more
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _BodyTooSlow from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limits.max_body_bytes:
                    raise _BodyTooLarge
                body_done = not message.get("more_body", False)
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, bounded_receive, tracking_send)
        except (_BodyTooLarge, _BodyTooSlow) as error:
            if started:
                raise
            status, code, text = (
                (413, "MessageTooLarge", "body too large")
                if isinstance(error, _BodyTooLarge)
                else (408, "RequestTimeout", "body not received in time")
            )
            await self._refuse(status, code, text, scope, send)

    async def _refuse(self, status: int, code: str, text: str, scope: Scope, send: Send) -> None:
        log.info("http %s %s -> %d (%s)", scope.get("method"), scope.get("path"), status, text)
        response = self._error(status, code, text)
        response.headers["connection"] = "close"

        async def nothing() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, nothing, send)


class _BodyTooLarge(Exception):
    pass


class _BodyTooSlow(Exception):
    pass


class _Guarded(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a per-address connection cap."""

    limits: HttpLimits
    peers: Counter[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # No access log, whatever the logging setup: a request line's query can carry a key.
        self.access_log = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        peer = self.client[0] if self.client else ""
        self._peer = peer
        self._counted = True
        self.peers[peer] += 1
        if self.peers[peer] > self.limits.max_connections_per_peer:
            log.warning("http: too many connections from %s; closing one", peer)
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._uncount()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        # The transport moves to the WebSocket protocol, which this one never hears of again.
        self._disarm()
        self._uncount()
        super().handle_websocket_upgrade(event)

    def _uncount(self) -> None:
        if getattr(self, "_counted", False):
            self._counted = False
            self.peers[self._peer] -= 1
            if self.peers[self._peer] <= 0:
                del self.peers[self._peer]

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:
            if self._deadline is None:
                self._arm()
        else:
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # until the next request's first bytes: the keep-alive timeout rules

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.limits.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        deadline = getattr(self, "_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.info("http: no complete request from %s in time; closing", self._peer)
            self.transport.close()


class HttpServer:
    """One ASGI app on one or more listening sockets."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        sockets: Sequence[socket.socket],
        ssl_context: ssl.SSLContext | None = None,
        limits: HttpLimits | None = None,
        name: str = "http",
        websocket: type[asyncio.Protocol] | None = None,
    ) -> None:
        self._limits = limits or HttpLimits()
        protocol = type("GuardedH11", (_Guarded,), {"limits": self._limits, "peers": Counter()})
        self._config = Config(
            app,
            http=protocol,
            ws=websocket or "none",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,  # nothing is proxied here; its middleware cost ~5 % of the loop
            timeout_keep_alive=int(self._limits.idle_timeout),
            timeout_graceful_shutdown=1,
            h11_max_incomplete_event_size=self._limits.max_header_bytes * 4,
        )
        self._sockets = list(sockets)
        self._ssl = ssl_context
        self._name = name
        self._server: Server | None = None
        self._ticking: asyncio.Task[None] | None = None

    @property
    def ports(self) -> list[int]:
        """The bound port of each socket, in order."""
        return [int(sock.getsockname()[1]) for sock in self._sockets]

    async def start(self) -> None:
        """Serve on the sockets."""
        config = self._config
        config.load()
        config.ssl = self._ssl
        server = Server(config)
        server.lifespan = config.lifespan_class(config)  # "off": nothing to start or stop
        self._server = server
        loop = asyncio.get_running_loop()

        def protocol() -> Any:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=server.server_state, app_state={}
            )

        server.servers = [
            await loop.create_server(
                protocol,
                sock=sock,
                ssl=self._ssl,
                ssl_handshake_timeout=self._limits.handshake_timeout if self._ssl else None,
                backlog=2048,
            )
            for sock in self._sockets
        ]
        server.started = True
        self._ticking = loop.create_task(server.main_loop(), name=f"{self._name}-tick")

    async def close(self) -> None:
        """Stop listening, end every connection, and wait (briefly) for the apps to return."""
        server = self._server
        if server is None:
            return
        server.should_exit = True
        if self._ticking is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticking
        for listener in server.servers:
            listener.close()
        state = server.server_state
        for connection in list(state.connections):
            connection.shutdown()  # idle: closed now; busy: closed once its response is sent
        deadline = asyncio.get_running_loop().time() + SHUTDOWN_GRACE
        while state.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(state.connections):  # a long poll, a client that stopped reading
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        for task in list(state.tasks):
            task.cancel()
        if state.tasks:
            await asyncio.wait(list(state.tasks), timeout=SHUTDOWN_GRACE)
        for listener in server.servers:
            await listener.wait_closed()
        self._server = None
