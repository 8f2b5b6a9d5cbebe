"""MQTT 3.1.1 control packets as frozen values, and the protocol's numeric constants.

These are the only shapes the codec produces and accepts: the engine, the shell and the tests never
handle raw bytes. Packets that only a QoS 2 flow uses (PUBREC, PUBREL, PUBCOMP) have no value here,
because this server speaks the QoS 0/1 subset that the Azure IoT SDKs use.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "SUBACK_FAILURE",
    "Connack",
    "ConnackCode",
    "Connect",
    "Disconnect",
    "Packet",
    "PacketType",
    "Pingreq",
    "Pingresp",
    "Puback",
    "Publish",
    "Suback",
    "Subscribe",
    "Unsuback",
    "Unsubscribe",
    "Will",
]

SUBACK_FAILURE = 0x80
"""SUBACK return code for a refused topic filter (MQTT 3.1.1 §3.9.3)."""


class PacketType(enum.IntEnum):
    """Control packet types: the high nibble of the first byte (MQTT 3.1.1 §2.2.1)."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


class ConnackCode(enum.IntEnum):
    """CONNACK return codes (MQTT 3.1.1 §3.2.2.3)."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USERNAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


@dataclass(frozen=True, kw_only=True)
class Will:
    """The last-will message of a CONNECT (parsed for completeness; the emulator never sends it)."""

    topic: str
    message: bytes
    qos: int = 0
    retain: bool = False


@dataclass(frozen=True, kw_only=True)
class Connect:
    """CONNECT: the first packet of every connection."""

    client_id: str
    username: str | None = None
    password: bytes | None = None
    clean_session: bool = True
    keep_alive: int = 0
    will: Will | None = None
    protocol_name: str = "MQTT"
    protocol_level: int = 4

    def __repr__(self) -> str:
        # The password is a SAS token: never let it reach a log line or a test report.
        password = "<hidden>" if self.password is not None else None
        return (
            f"Connect(client_id={self.client_id!r}, username={self.username!r}, "
            f"password={password}, clean_session={self.clean_session}, "
            f"keep_alive={self.keep_alive}, protocol_level={self.protocol_level})"
        )


@dataclass(frozen=True)
class Connack:
    """CONNACK: the server's answer to CONNECT."""

    return_code: int
    session_present: bool = False


@dataclass(frozen=True, kw_only=True)
class Publish:
    """PUBLISH in either direction; `packet_id` is set exactly when `qos` is 1."""

    topic: str
    payload: bytes = b""
    qos: int = 0
    packet_id: int | None = None
    dup: bool = False
    retain: bool = False


@dataclass(frozen=True)
class Puback:
    """PUBACK: acknowledges a QoS 1 PUBLISH."""

    packet_id: int


@dataclass(frozen=True)
class Subscribe:
    """SUBSCRIBE: one or more `(topic_filter, requested_qos)` pairs."""

    packet_id: int
    subscriptions: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Suback:
    """SUBACK: one granted QoS (or SUBACK_FAILURE) per requested filter, in order."""

    packet_id: int
    return_codes: tuple[int, ...]


@dataclass(frozen=True)
class Unsubscribe:
    """UNSUBSCRIBE: one or more topic filters."""

    packet_id: int
    topic_filters: tuple[str, ...]


@dataclass(frozen=True)
class Unsuback:
    """UNSUBACK: acknowledges an UNSUBSCRIBE."""

    packet_id: int


@dataclass(frozen=True)
class Pingreq:
    """PINGREQ: the client's keep-alive probe."""


@dataclass(frozen=True)
class Pingresp:
    """PINGRESP: the answer to PINGREQ."""


@dataclass(frozen=True)
class Disconnect:
    """DISCONNECT: the client ends the connection cleanly."""


Packet = (
    Connect
    | Connack
    | Publish
    | Puback
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
)
