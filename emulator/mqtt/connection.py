"""The server side of one MQTT 3.1.1 connection, as a state machine with no I/O.

`receive_data(bytes)` turns what the client sent into events (the packets it sent, plus a final
`ProtocolViolation` if it broke the protocol); `send(packet)` turns what the server decides into
bytes. Automatic replies (UNSUBACK, PINGRESP, and the CONNACK that refuses an unsupported protocol
level) are queued by `receive_data` and returned by the next `data_to_send()` or `send()`, always
in the order they arose. A QoS 1 PUBLISH is not acknowledged by the engine: the shell calls
`acknowledge(packet_id)` once the endpoint has accepted the message (IoT Hub closes, without a
PUBACK, a connection that publishes where it may not), so a PUBACK always follows the decision.

What the engine does NOT do: sockets, TLS, clocks, authentication, routing or subscription
matching. Keep-alive is data: `receive_timeout` says how long the shell may wait for the next
bytes before it must close the connection (before CONNECT: `connect_timeout`; after: 1.5 times the
client's keep-alive [3.1.2.10]; keep-alive 0: no limit).

States and the packets each allows (anything else is a `ProtocolViolation`, after which the state
is CLOSED and every later call is a no-op or a `LocalProtocolError`):

    state            client may send                            server may send
    AWAIT_CONNECT    CONNECT                                    -
    CONNECTING       PUBLISH PUBACK SUBSCRIBE UNSUBSCRIBE       CONNACK (0 -> CONNECTED,
                     PINGREQ DISCONNECT (queued behind the          else -> CLOSED)
                     CONNECT decision, which the shell makes
                     first because it handles events in order)
    CONNECTED        same as CONNECTING                         PUBLISH SUBACK
    CLOSED           nothing (bytes are ignored)                nothing

A DISCONNECT moves to CLOSED. Server QoS 1 PUBLISHes get fresh packet ids (`allocate_packet_id`,
or given) and stay in `unacknowledged` until the client PUBACKs them; server QoS 0 PUBLISHes have
no packet id and nothing to wait for.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from emulator.mqtt.codec import DEFAULT_MAX_PACKET_SIZE, decode, encode
from emulator.mqtt.errors import LocalProtocolError, NeedMoreData, ProtocolError
from emulator.mqtt.packets import (
    Connack,
    ConnackCode,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)

__all__ = ["ConnectionState", "Event", "ProtocolViolation", "ServerConnection"]

DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds a new connection may take to send its CONNECT."""


class ConnectionState(enum.Enum):
    """Where one connection is in its life (table in the module docstring)."""

    AWAIT_CONNECT = "await-connect"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclass(frozen=True)
class ProtocolViolation:
    """The client broke the protocol; the shell must log `reason` and close the connection."""

    reason: str


Event = Connect | Publish | Puback | Subscribe | Unsubscribe | Disconnect | ProtocolViolation
"""What `receive_data` reports: the client's packets, or the violation that ended it."""

_CLIENT_PACKETS = (Publish, Puback, Subscribe, Unsubscribe, Pingreq, Disconnect)


class ServerConnection:
    """One client connection seen from the server: bytes in, events out; packets in, bytes out."""

    def __init__(
        self,
        *,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self.state = ConnectionState.AWAIT_CONNECT
        self.keep_alive = 0
        self._max_packet_size = max_packet_size
        self._connect_timeout = connect_timeout
        self._inbox = bytearray()
        self._outbox = bytearray()
        self._next_packet_id = 1
        self._unacknowledged: dict[int, Publish] = {}
        self.packets_received = 0  # complete packets so far: what keep-alive counts, not bytes

    @property
    def receive_timeout(self) -> float | None:
        """Seconds the shell may wait for the next complete packet (the CONNECT: from the
        connection's start); None means no limit."""
        if self.state is ConnectionState.AWAIT_CONNECT:
            return self._connect_timeout
        if self.keep_alive == 0:
            return None
        return 1.5 * self.keep_alive

    @property
    def closed(self) -> bool:
        """True once the connection is over (refused, disconnected or violated)."""
        return self.state is ConnectionState.CLOSED

    @property
    def unacknowledged(self) -> tuple[Publish, ...]:
        """Server QoS 1 PUBLISHes the client has not PUBACKed yet, oldest first."""
        return tuple(self._unacknowledged.values())

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the client; return the events they complete, in order."""
        if self.state is ConnectionState.CLOSED:
            return []
        self._inbox += data
        events: list[Event] = []
        while not self.closed:
            try:
                packet, used = decode(self._inbox, max_packet_size=self._max_packet_size)
            except NeedMoreData:
                break
            except ProtocolError as error:
                events.append(self._violation(str(error)))
                break
            del self._inbox[:used]
            self.packets_received += 1
            event = self._receive_packet(packet)
            if event is not None:
                events.append(event)
        if self.closed:
            self._inbox.clear()  # what follows a DISCONNECT or a violation is never read
        return events

    def _receive_packet(self, packet: Packet) -> Event | None:
        if self.state is ConnectionState.AWAIT_CONNECT:
            if not isinstance(packet, Connect):
                return self._violation(f"expected CONNECT, got {type(packet).__name__.upper()}")
            return self._receive_connect(packet)
        if not isinstance(packet, _CLIENT_PACKETS):
            return self._violation(f"a client may not send {type(packet).__name__.upper()} here")
        if isinstance(packet, Puback):
            self._unacknowledged.pop(packet.packet_id, None)
        elif isinstance(packet, Unsubscribe):
            self._queue(Unsuback(packet.packet_id))
        elif isinstance(packet, Pingreq):
            self._queue(Pingresp())
            return None
        elif isinstance(packet, Disconnect):
            self.state = ConnectionState.CLOSED
        return packet

    def _receive_connect(self, packet: Connect) -> Event:
        if packet.protocol_name != "MQTT" or packet.protocol_level != 4:
            self._queue(Connack(ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION))
            return self._violation(
                f"CONNECT: protocol {packet.protocol_name!r} level {packet.protocol_level} "
                "is not MQTT 3.1.1"
            )
        if not packet.client_id and not packet.clean_session:
            self._queue(Connack(ConnackCode.IDENTIFIER_REJECTED))
            return self._violation("CONNECT: empty client identifier needs CleanSession 1")
        self.keep_alive = packet.keep_alive
        self.state = ConnectionState.CONNECTING
        return packet

    def _violation(self, reason: str) -> ProtocolViolation:
        self.state = ConnectionState.CLOSED
        self._inbox.clear()
        return ProtocolViolation(reason)

    def send(self, packet: Connack | Publish | Suback) -> bytes:
        """Queue a server decision and return every byte now due to the client, in order.

        A QoS 1 PUBLISH without a packet id gets the next free one.
        """
        if isinstance(packet, Connack):
            if self.state is not ConnectionState.CONNECTING:
                raise LocalProtocolError(f"CONNACK is not allowed in state {self.state.name}")
            accepted = packet.return_code == ConnackCode.ACCEPTED
            self._queue(packet)
            self.state = ConnectionState.CONNECTED if accepted else ConnectionState.CLOSED
            return self.data_to_send()
        if self.state is not ConnectionState.CONNECTED:
            name = type(packet).__name__.upper()
            raise LocalProtocolError(f"{name} is not allowed in state {self.state.name}")
        if isinstance(packet, Publish) and packet.qos == 1:
            packet_id = packet.packet_id or self.allocate_packet_id()
            packet = replace(packet, packet_id=packet_id)
            self._unacknowledged[packet_id] = packet
        self._queue(packet)
        return self.data_to_send()

    def acknowledge(self, packet_id: int) -> bytes:
        """The PUBACK for an accepted QoS 1 PUBLISH (its `packet_id`), after what is queued."""
        if self.state is ConnectionState.CLOSED:
            return b""
        self._queue(Puback(packet_id))
        return self.data_to_send()

    def data_to_send(self) -> bytes:
        """Drain the bytes queued for the client (automatic replies and sent packets)."""
        out = bytes(self._outbox)
        self._outbox.clear()
        return out

    def _queue(self, packet: Packet) -> None:
        self._outbox += encode(packet)

    def allocate_packet_id(self) -> int:
        """A packet id no unacknowledged PUBLISH holds, for the QoS 1 PUBLISH sent next (so the
        shell can match the client's PUBACK to what it sent)."""
        for _ in range(0xFFFF):
            candidate = self._next_packet_id
            self._next_packet_id = candidate % 0xFFFF + 1
            if candidate not in self._unacknowledged:
                return candidate
        raise LocalProtocolError("all 65535 packet identifiers are awaiting PUBACK")
