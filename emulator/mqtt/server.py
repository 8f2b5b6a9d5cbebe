"""The asyncio shell: one `ServerConnection` per client, endpoints by username, over any byte stream.

For each client the shell reads bytes, feeds them to the sans-IO engine, writes what the engine
returns, and hands each event to the endpoint the CONNECT username routed to
(`ports.MqttEndpoint`): DPS or one of the hubs. It decides nothing about DPS or hubs itself.

Two transports share everything below: the TLS listener here (port 8883), and MQTT over
WebSockets (`mqtt.websocket`, on the HTTPS port), which hands each upgraded connection to
`MqttServer.serve` as a `Channel` (where bytes go) and a `Receive` (where they come from). The
rules, limits and the journal's hold on acknowledgements are the same for both.

Per-connection rules (one bad client costs only its own connection; the server keeps serving):
- the TLS handshake must finish within `connect_timeout`, then the whole CONNECT packet must
  arrive within `connect_timeout` of it, however the bytes trickle in; afterwards a complete
  packet within 1.5 x keep-alive of the previous one (bytes of an unfinished packet do not
  count) -> else closed;
- at most `max_connections_per_address` connections from one address (a fleet simulator on one
  machine opens thousands, so the default is high) -> more are closed at once;
- a `ProtocolViolation` (malformed, QoS 2, oversized, out of order) -> logged and closed;
- a PUBLISH the endpoint refuses (a topic the device may not use) -> closed, not acknowledged;
- a client that does not read (write buffer above `max_write_buffer`) -> closed;
- with `durability` (the state journal, `--state-dir`): while a change is not yet on disk, every
  byte a connection would send is held (in order) until it is, so no acknowledgement (PUBACK,
  twin response, DPS reply) reaches a client before the change it acknowledges is durable; if
  the journal fails, connections with held bytes are closed instead;
- an exception inside an endpoint -> logged with its traceback and that connection closed;
- `Send` after the connection ended is dropped silently (ports.py).
Server-to-client PUBLISHes go out at the QoS the endpoint asks for (QoS 1 gets a packet id; the
client's PUBACK calls the endpoint's `on_acknowledged`, which a hub uses to take a C2D message off
its queue); a SUBSCRIBE is granted at the requested QoS, at most 1 (IoT Hub grants QoS 2 as 1,
hub-mqtt.md §1). The CONNECT's CleanSession flag goes to the endpoint, whose answer may set the
CONNACK's Session Present.
Log lines carry peer, client id and reasons; never a password, token or payload.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import logging
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Protocol

from emulator.endpoints import MqttEndpoint, connack_of
from emulator.mqtt import (
    SUBACK_FAILURE,
    Connack,
    ConnackCode,
    Connect,
    ConnectionState,
    Disconnect,
    ProtocolViolation,
    Puback,
    Publish,
    ServerConnection,
    Suback,
    Subscribe,
    Unsubscribe,
)
from emulator.mqtt.codec import DEFAULT_MAX_PACKET_SIZE

__all__ = ["MQTT_TLS_PORT", "Channel", "MqttServer", "Receive", "Router"]

# A fleet connecting at once queues its TCP handshakes here; asyncio's default is 100.
LISTEN_BACKLOG = 2048
MAX_CONNECTIONS_PER_ADDRESS = 16_384
# asyncio's TLS layer allocates one read buffer of this size per connection (256 KiB in 3.11):
# most of the memory a connected device costs (bench/emulator_bench.py, bench/scale_bench.py).
# Device messages are small and a larger record is read in several steps (a 256 KiB message in
# 64), so 4 KiB serves as well: a connected device went from 298 KiB to 64 KiB at 32 KiB, and to
# about 34 KiB at 4 KiB, with no change in the emulator's CPU per message.
TLS_READ_BUFFER = 4 * 1024

log = logging.getLogger(__name__)

MQTT_TLS_PORT = 8883  # hard-coded in the Python device SDK (dps-mqtt.md §1)

Router = Callable[[str], MqttEndpoint | None]
"""Pick the endpoint for a CONNECT username; None refuses the connection with CONNACK 5."""

Clock = Callable[[], float]

Receive = Callable[[], Awaitable[bytes]]
"""The next bytes a client sent; b"" once its stream has ended."""


class Channel(Protocol):
    """Where the shell writes one client's bytes: a TLS stream, or a WebSocket's binary frames.

    `write` never blocks: bytes are buffered in order, and `buffered` says how many still wait
    to leave (the shell closes a client that lets too many pile up). `drain` waits until the
    buffer is low again. `close` ends the stream after what is buffered; `abort` at once.
    """

    peer: str

    def write(self, data: bytes) -> None: ...

    def buffered(self) -> int: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...

    def is_closing(self) -> bool: ...


class Durability(Protocol):
    """The state journal as the shell sees it (`persistence.journal.Journal`)."""

    durable: int

    def pending(self) -> int | None:
        """The entry an acknowledgement sent now must wait for, or None when all is on disk."""

    async def wait(self, seq: int) -> None:
        """Return once entry `seq` is on disk; OSError if it never will be."""


class MqttServer:
    """A TLS MQTT listener on one address that routes each connection to an endpoint."""

    def __init__(
        self,
        *,
        router: Router,
        ssl_context: ssl.SSLContext | None,
        host: str,
        port: int = MQTT_TLS_PORT,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        connect_timeout: float = 10.0,
        max_write_buffer: int = 4 * 1024 * 1024,
        max_connections_per_address: int = MAX_CONNECTIONS_PER_ADDRESS,
        clock: Clock = time.time,
        durability: Durability | None = None,
    ) -> None:
        self._durability = durability
        self._per_address = max_connections_per_address
        self._addresses: Counter[str] = Counter()
        self._router = router
        self._ssl = ssl_context
        self._host = host
        self._port = port
        self._max_packet_size = max_packet_size
        self._connect_timeout = connect_timeout
        self._max_write_buffer = max_write_buffer
        self._clock = clock
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound port (useful when constructed with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Bind and start accepting connections."""
        _shrink_tls_read_buffer()
        self._server = await asyncio.start_server(
            self._serve,
            self._host,
            self._port,
            backlog=LISTEN_BACKLOG,
            ssl=self._ssl,
            ssl_handshake_timeout=self._connect_timeout if self._ssl else None,
        )
        log.info("mqtt listening host=%s port=%d", self._host, self.port)

    async def close(self) -> None:
        """Stop accepting, drop every connection and wait until they are gone."""
        if self._server is None:
            return
        self._server.close()
        for connection in list(self._connections):
            connection.close()
        # Python 3.11's wait_closed() does not wait for connection handlers: wait for them here,
        # so that no handler outlives the server (and the loop it runs on).
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.serve(_StreamChannel(writer), lambda: reader.read(64 * 1024))
        with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def serve(self, channel: Channel, receive: Receive) -> None:
        """Run one client's MQTT session over `channel` until it ends (any transport)."""
        engine = ServerConnection(
            max_packet_size=self._max_packet_size, connect_timeout=self._connect_timeout
        )
        connection = _Connection(engine, channel, self._max_write_buffer, self._durability)
        address = connection.peer.rpartition(":")[0]
        self._addresses[address] += 1
        if self._addresses[address] > self._per_address:
            log.warning("too many connections from %s; closing one", address)
            self._release(address)
            connection.close()
            return
        self._connections.add(connection)
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
            handler.add_done_callback(self._handlers.discard)
        try:
            await self._run(connection, receive)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError) as error:
            log.info("connection lost peer=%s error=%s", connection.peer, type(error).__name__)
        except Exception:
            log.exception(
                "endpoint failed; closing peer=%s client_id=%s",
                connection.peer,
                connection.client_id,
            )
        finally:
            self._release(address)
            self._connections.discard(connection)
            connection.close()
            if connection.endpoint is not None and not connection.closed_by_endpoint:
                connection.endpoint.disconnect(client_id=connection.client_id)

    def _release(self, address: str) -> None:
        self._addresses[address] -= 1
        if self._addresses[address] <= 0:
            del self._addresses[address]

    async def _run(self, connection: _Connection, receive: Receive) -> None:
        engine = connection.engine
        loop = asyncio.get_running_loop()
        last_packet, seen = loop.time(), 0  # the CONNECT's deadline runs from the connection
        while connection.is_open():
            timeout = engine.receive_timeout
            try:
                async with asyncio.timeout_at(None if timeout is None else last_packet + timeout):
                    data = await receive()
            except TimeoutError:
                log.info(
                    "keep-alive expired; closing peer=%s client_id=%s",
                    connection.peer,
                    connection.client_id,
                )
                return
            if not data:
                return
            events = engine.receive_data(data)
            if engine.packets_received != seen:
                last_packet, seen = loop.time(), engine.packets_received
            connection.write(engine.data_to_send())
            for event in events:
                if not connection.is_open():
                    return
                self._handle(connection, event)
            await connection.drain()

    def _handle(self, connection: _Connection, event: object) -> None:
        engine = connection.engine
        if isinstance(event, Connect):
            self._connect(connection, event)
            return
        endpoint = connection.endpoint
        if isinstance(event, ProtocolViolation):
            log.warning(
                "protocol violation; closing peer=%s client_id=%s reason=%s",
                connection.peer,
                connection.client_id,
                event.reason,
            )
            connection.close()
        elif endpoint is None:
            return  # refused at CONNECT: the engine is closed and produces nothing more
        elif isinstance(event, Publish):
            # What the endpoint sends while deciding (a twin response, a DPS reply) goes out after
            # the PUBACK, as IoT Hub orders them, and not at all if the PUBLISH is refused.
            connection.deferring = True
            try:
                accepted = endpoint.publish(
                    client_id=connection.client_id,
                    topic=event.topic,
                    payload=event.payload,
                    send=connection.send,
                    now=self._clock(),
                )
            finally:
                connection.deferring = False
            if not accepted:
                connection.close()
                return
            if event.packet_id is not None:  # QoS 1: acknowledged once accepted
                connection.write(engine.acknowledge(event.packet_id))
            connection.flush_pending()
        elif isinstance(event, Puback):
            connection.acknowledged(event.packet_id)
        elif isinstance(event, Subscribe):
            codes = tuple(
                min(qos, 1)
                if endpoint.subscribe(
                    client_id=connection.client_id, topic_filter=topic_filter, qos=min(qos, 1)
                )
                else SUBACK_FAILURE
                for topic_filter, qos in event.subscriptions
            )
            connection.write(engine.send(Suback(event.packet_id, codes)))
        elif isinstance(event, Unsubscribe):
            for topic_filter in event.topic_filters:
                endpoint.unsubscribe(client_id=connection.client_id, topic_filter=topic_filter)
        elif isinstance(event, Disconnect):
            log.info("disconnect peer=%s client_id=%s", connection.peer, connection.client_id)

    def _connect(self, connection: _Connection, event: Connect) -> None:
        connection.client_id = event.client_id
        endpoint = self._router(event.username or "")
        if endpoint is None:
            code, session_present = int(ConnackCode.NOT_AUTHORIZED), False
        else:
            code, session_present = connack_of(
                endpoint.connect(
                    client_id=event.client_id,
                    username=event.username or "",
                    password=event.password,
                    send=connection.send,
                    close=connection.close_by_endpoint,
                    now=self._clock(),
                    clean_session=event.clean_session,
                )
            )
        present = session_present and code == ConnackCode.ACCEPTED
        connection.write(connection.engine.send(Connack(code, session_present=present)))
        if code == ConnackCode.ACCEPTED:
            connection.endpoint = endpoint
            log.info("connected peer=%s client_id=%s", connection.peer, event.client_id)
            connection.flush_pending()
        else:
            log.info(
                "refused peer=%s client_id=%s connack=%d", connection.peer, event.client_id, code
            )
            connection.close()


class _Connection:
    """The shell's handle on one client: engine, channel, and the callbacks endpoints get."""

    def __init__(
        self,
        engine: ServerConnection,
        channel: Channel,
        max_write_buffer: int,
        durability: Durability | None = None,
    ) -> None:
        self.engine = engine
        self._durability = durability
        self._held: list[tuple[int, bytes]] = []  # (journal entry it waits for, bytes), in order
        self._held_bytes = 0
        self._releasing: asyncio.Task[None] | None = None
        self.client_id = ""
        self.endpoint: MqttEndpoint | None = None
        self.closed = False
        self.closed_by_endpoint = False
        self.deferring = False  # an endpoint is deciding on this client's PUBLISH
        self._pending: list[tuple[str, bytes, int, Callable[[], None] | None]] = []
        self._on_puback: dict[int, Callable[[], None]] = {}  # packet id -> the endpoint's hook
        self._channel = channel
        self._max_write_buffer = max_write_buffer
        self.peer = channel.peer

    def is_open(self) -> bool:
        return not self.closed and not self.engine.closed

    def write(self, data: bytes) -> None:
        if not data or self.closed:
            return
        if self._durability is not None:
            seq = self._durability.pending()
            if seq is not None or self._held:
                self._hold(data, seq)
                return
        self._write_now(data)

    def _hold(self, data: bytes, seq: int | None) -> None:
        # Entries are awaited in order: a later chunk never waits for less than an earlier one.
        wait_for = max(seq or 0, self._held[-1][0] if self._held else 0)
        self._held.append((wait_for, data))
        self._held_bytes += len(data)
        if self._held_bytes > self._max_write_buffer:
            log.warning(
                "too much held for the journal; closing peer=%s client_id=%s",
                self.peer,
                self.client_id,
            )
            self._held.clear()
            self.close()
            return
        if self._releasing is None:
            self._releasing = asyncio.get_running_loop().create_task(self._release())

    async def _release(self) -> None:
        durability = self._durability
        try:
            while self._held and durability is not None:
                await durability.wait(self._held[0][0])
                ready = 0
                while ready < len(self._held) and self._held[ready][0] <= durability.durable:
                    ready += 1
                chunks, self._held = self._held[:ready], self._held[ready:]
                self._held_bytes -= sum(len(data) for _, data in chunks)
                for _, data in chunks:
                    self._write_now(data)
        except OSError:
            log.warning(
                "state journal failed; closing peer=%s client_id=%s", self.peer, self.client_id
            )
            self._held.clear()
            self.closed = True
        finally:
            self._releasing = None
            if self.closed:  # closed while bytes were held: they went out first, now close
                self._close_channel()

    def _write_now(self, data: bytes) -> None:
        self._channel.write(data)
        if self._channel.buffered() > self._max_write_buffer:
            log.warning(
                "client is not reading; closing peer=%s client_id=%s", self.peer, self.client_id
            )
            self._held.clear()
            self.close()

    async def drain(self) -> None:
        if not self.closed:
            await self._channel.drain()

    def send(
        self,
        topic: str,
        payload: bytes,
        /,
        *,
        qos: int = 1,
        on_acknowledged: Callable[[], None] | None = None,
    ) -> None:
        """`ports.Send`: a PUBLISH at `qos` (0 or 1) to this client, or nothing if it is gone.

        Sends made while the CONNECT is being decided (an endpoint flushing queued messages)
        wait for the CONNACK, which must be the first packet the client gets; sends made while
        the client's PUBLISH is being decided wait for its PUBACK. `on_acknowledged` runs when
        the client PUBACKs a QoS 1 PUBLISH.
        """
        if not self.is_open():
            return
        if self.deferring or self.engine.state is ConnectionState.CONNECTING:
            self._pending.append((topic, payload, qos, on_acknowledged))
            return
        if qos == 0:
            self.write(self.engine.send(Publish(topic=topic, payload=payload)))
            return
        packet_id = self.engine.allocate_packet_id()
        if on_acknowledged is not None:
            self._on_puback[packet_id] = on_acknowledged
        self.write(
            self.engine.send(Publish(topic=topic, payload=payload, qos=1, packet_id=packet_id))
        )

    def acknowledged(self, packet_id: int) -> None:
        """The client PUBACKed `packet_id`: run the endpoint's hook for it, once."""
        hook = self._on_puback.pop(packet_id, None)
        if hook is not None:
            hook()

    def flush_pending(self) -> None:
        pending, self._pending = self._pending, []
        for topic, payload, qos, on_acknowledged in pending:
            self.send(topic, payload, qos=qos, on_acknowledged=on_acknowledged)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._pending.clear()
        self._on_puback.clear()  # a PUBACK can no longer come: the endpoint keeps what is unsent
        if self._held and self._releasing is not None:
            return  # `_release` sends what is held once it is durable, then closes
        self._close_channel()

    def _close_channel(self) -> None:
        if self._channel.is_closing():
            return
        if self._aborting():
            self._channel.abort()
        else:
            self._channel.close()

    def close_by_endpoint(self) -> None:
        """`ports.Close`: the endpoint ends this connection (a newer one took the device id)."""
        self.closed_by_endpoint = True
        self.close()

    def _aborting(self) -> bool:
        # A client that does not read would keep a graceful close waiting for its buffer.
        return self._channel.buffered() > self._max_write_buffer


class _StreamChannel:
    """A `Channel` over an asyncio TLS stream (the 8883 listener)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    def buffered(self) -> int:
        return self._writer.transport.get_write_buffer_size()

    async def drain(self) -> None:
        await self._writer.drain()

    def close(self) -> None:
        self._writer.close()

    def abort(self) -> None:
        self._writer.transport.abort()

    def is_closing(self) -> bool:
        return self._writer.is_closing()


def _shrink_tls_read_buffer() -> None:
    """Cap asyncio's per-connection TLS read buffer (a class attribute of its SSL protocol)."""
    protocol = getattr(asyncio.sslproto, "SSLProtocol", None)
    if protocol is not None and getattr(protocol, "max_size", 0) > TLS_READ_BUFFER:
        protocol.max_size = TLS_READ_BUFFER
