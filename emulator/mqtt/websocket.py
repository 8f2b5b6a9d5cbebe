"""MQTT over WebSockets: the MQTT shell's second transport, on the HTTPS port.

IoT Hub and DPS take MQTT 3.1.1 in WebSocket binary frames at `wss://<host>:443/$iothub/websocket`
with the subprotocol `mqtt`, for devices behind firewalls that only let 443 out
(docs/protocol/transports.md §2). The HTTPS listener (`https.gateway`, uvicorn over h11) hands
every WebSocket upgrade request to `MqttWebSocket`, an asyncio protocol: wsproto does the opening
handshake and the framing, and the MQTT bytes go to `MqttServer.serve` as a TLS stream's do. So
the engine, the routing by CONNECT username, the limits and the journal's hold on
acknowledgements are the same on both transports; this module only translates frames <-> bytes.

Rules:
- the path must be `/$iothub/websocket` (else 404) and the client must offer the subprotocol
  `mqtt` (else 400), as the SDKs do; no extension (permessage-deflate) is negotiated;
- an MQTT packet may span frames and a frame may hold several (MQTT 3.1.1 §6.0); a text frame
  closes the connection (code 1003), as §6.0 requires;
- pings are answered; a client's close is answered and ends the session; a frame wsproto cannot
  parse closes the connection with the code wsproto names (1002 protocol error, 1007, ...);
- the handshake arrives as an HTTP request, within the HTTP server's header deadline; after it,
  the MQTT rules hold (CONNECT deadline, keep-alive, packet size, connections per address);
- reading pauses while more than `READ_BUFFER` bytes wait for the engine.

Nothing here logs a frame's content: it carries SAS tokens and payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any, ClassVar
from urllib.parse import unquote

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from emulator.mqtt.server import MqttServer

__all__ = ["SUBPROTOCOL", "WEBSOCKET_PATH", "MqttWebSocket"]

log = logging.getLogger(__name__)

WEBSOCKET_PATH = "/$iothub/websocket"  # the SDKs' fixed path (transports.md §2)
SUBPROTOCOL = "mqtt"
READ_BUFFER = 256 * 1024
CLOSE_UNSUPPORTED_DATA = 1003


class MqttWebSocket(asyncio.Protocol):
    """One WebSocket connection carrying MQTT: a `server.Channel` and its reading side.

    uvicorn makes one per upgrade request (as its `ws` protocol class) with its server state, so
    that stopping the HTTPS server ends these connections too. `mqtt` is set on the subclass the
    gateway makes for its `MqttServer`.
    """

    mqtt: ClassVar[MqttServer]

    def __init__(self, server_state: Any = None, **_: Any) -> None:
        self._registry: set[Any] = server_state.connections if server_state is not None else set()
        self._tasks: set[asyncio.Task[None]] = (
            server_state.tasks if server_state is not None else set()
        )
        self._ws = WSConnection(ConnectionType.SERVER)
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self._incoming: deque[bytes] = deque()
        self._incoming_bytes = 0
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._ended = False  # no more bytes will come from the client
        self._paused = False

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 -- a stream protocol
        self.transport = transport
        self._registry.add(self)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.discard(self)
        self._end()
        self._writable.set()  # a writer waiting in drain() must not wait for a dead socket

    def eof_received(self) -> bool | None:
        self._end()
        return None  # close the transport

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        try:
            self._ws.receive_data(data)
            events = list(self._ws.events())
        except RemoteProtocolError as error:
            log.info("websocket protocol error; closing peer=%s reason=%s", self.peer, error)
            if error.event_hint is not None:
                self._send(error.event_hint)
            self._finish()
            return
        for event in events:
            if isinstance(event, Request):
                self._handshake(event)
            elif isinstance(event, BytesMessage):
                self._feed(bytes(event.data))
            elif isinstance(event, TextMessage):
                log.info("websocket text frame; closing peer=%s", self.peer)
                self._send(CloseConnection(CLOSE_UNSUPPORTED_DATA, "MQTT travels in binary frames"))
                self._finish()
                return
            elif isinstance(event, Ping):
                self._send(event.response())
            elif isinstance(event, CloseConnection):
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    self._send(event.response())
                self._finish()
                return

    # -- uvicorn's server asks each connection to stop ------------------------------------------

    def shutdown(self) -> None:
        """The HTTPS server is stopping: close after what is buffered."""
        self.close()

    # -- server.Channel --------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send MQTT bytes as one binary frame."""
        if self._ws.state is ConnectionState.OPEN:
            self._send(BytesMessage(data=data))

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    async def drain(self) -> None:
        await self._writable.wait()

    def close(self) -> None:
        """A close frame after what is buffered, then the socket (after its buffer)."""
        if self._ws.state is ConnectionState.OPEN:
            self._send(CloseConnection(1000))
        self._finish()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def is_closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    # -- internals -------------------------------------------------------------------------------

    def _handshake(self, request: Request) -> None:
        path = unquote(request.target.partition("?")[0])
        if path != WEBSOCKET_PATH:
            self._reject(
                404, f"no WebSocket endpoint here; MQTT over WebSockets is {WEBSOCKET_PATH}"
            )
            return
        if SUBPROTOCOL not in request.subprotocols:
            self._reject(400, "Sec-WebSocket-Protocol: expected the subprotocol mqtt")
            return
        self._send(AcceptConnection(subprotocol=SUBPROTOCOL))
        task = asyncio.get_running_loop().create_task(self._session(), name="mqtt-websocket")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _reject(self, status: int, reason: str) -> None:
        log.info("websocket refused peer=%s status=%d", self.peer, status)
        body = reason.encode("utf-8")
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"connection", b"close"),
        ]
        self._send(RejectConnection(status_code=status, headers=headers, has_body=True))
        self._send(RejectData(data=body))
        self._finish()

    async def _session(self) -> None:
        # `serve` closes the channel itself, once bytes the journal holds have gone out.
        try:
            await self.mqtt.serve(self, self._receive)
        except BaseException:
            self.abort()
            raise

    async def _receive(self) -> bytes:
        while not self._incoming and not self._ended:
            self._readable.clear()
            await self._readable.wait()
        data = b"".join(self._incoming)
        self._incoming.clear()
        self._incoming_bytes = 0
        if self._paused and self.transport is not None and not self.transport.is_closing():
            self._paused = False
            self.transport.resume_reading()
        return data

    def _feed(self, data: bytes) -> None:
        if not data or self._ended:
            return
        self._incoming.append(data)
        self._incoming_bytes += len(data)
        self._readable.set()
        if self._incoming_bytes > READ_BUFFER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def _send(self, event: Event) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        with contextlib.suppress(LocalProtocolError):  # the state moved on (a close crossed ours)
            self.transport.write(self._ws.send(event))

    def _end(self) -> None:
        self._ended = True
        self._readable.set()

    def _finish(self) -> None:
        self._end()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
