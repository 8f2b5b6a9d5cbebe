"""Encode and decode MQTT 3.1.1 packets (the QoS 0/1 subset), byte-exact, with no I/O.

`decode(buffer, max_packet_size=...)` reads one packet from the start of `buffer` and returns
`(packet, consumed)`; it raises `NeedMoreData` while the buffer holds only a prefix of a packet
and a `ProtocolError` subclass as soon as the bytes cannot become a valid packet (a too-large
remaining length is refused before its body arrives, so a hostile client cannot make us buffer it).
`encode(packet)` is its inverse: `decode(encode(p)) == (p, len(encode(p)))` for every valid `p`.

Rules enforced (MQTT 3.1.1 section numbers in brackets):
- fixed-header flags: PUBLISH carries DUP/QoS/RETAIN, SUBSCRIBE and UNSUBSCRIBE carry 0b0010, every
  other type 0 [2.2.2]; remaining length is 1-4 bytes [2.2.3];
- QoS 3 is malformed; QoS 2 (PUBLISH QoS 2, PUBREC/PUBREL/PUBCOMP) is `UnsupportedFeature` [4.3];
- strings are length-prefixed UTF-8 without U+0000 [1.5.3]; packet ids are non-zero [2.3.1];
- PUBLISH topics contain no wildcards [3.3.2.1]; SUBSCRIBE/UNSUBSCRIBE list at least one filter and
  requested QoS is 0-2 [3.8.3, 3.10.3]; CONNECT reserved flag is 0, a password needs a username, and
  will QoS/retain are 0 without a will [3.1.2].
A packet must use exactly its remaining length: missing or surplus body bytes are malformed.
"""

from __future__ import annotations

import struct

from emulator.mqtt.errors import MalformedPacket, NeedMoreData, PacketTooLarge, UnsupportedFeature
from emulator.mqtt.packets import (
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
)

__all__ = ["DEFAULT_MAX_PACKET_SIZE", "MAX_REMAINING_LENGTH", "decode", "encode"]

MAX_REMAINING_LENGTH = 268_435_455
"""The largest remaining length four length bytes can express [2.2.3]."""

DEFAULT_MAX_PACKET_SIZE = 256 * 1024 + 64 * 1024
"""IoT Hub's 256 KiB D2C limit plus room for a long topic and its property bag."""

_QOS2_TYPES = {PacketType.PUBREC, PacketType.PUBREL, PacketType.PUBCOMP}
_FLAGS_0010 = {PacketType.SUBSCRIBE, PacketType.UNSUBSCRIBE}


# -- decoding -----------------------------------------------------------------------------------


def decode(
    buffer: bytes | bytearray | memoryview, *, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
) -> tuple[Packet, int]:
    """Decode the packet at the start of `buffer`; return it and the number of bytes it used."""
    # Released on every exit, so a caller's bytearray can be resized even while an exception
    # raised here (and its traceback) is still alive.
    with memoryview(buffer) as view:
        if not view:
            raise NeedMoreData("empty buffer")
        first = view[0]
        remaining, header_len = _decode_remaining_length(view)
        if remaining > max_packet_size:
            raise PacketTooLarge(
                f"remaining length {remaining} exceeds the limit of {max_packet_size} bytes"
            )
        end = header_len + remaining
        if len(view) < end:
            raise NeedMoreData(f"have {len(view)} of {end} bytes")
        body = bytes(view[header_len:end])
    return _decode_body(first >> 4, first & 0x0F, body), end


def _decode_remaining_length(view: memoryview) -> tuple[int, int]:
    value = 0
    for index in range(1, 5):
        if index >= len(view):
            raise NeedMoreData("remaining length incomplete")
        byte = view[index]
        value |= (byte & 0x7F) << (7 * (index - 1))
        if not byte & 0x80:
            return value, index + 1
    raise MalformedPacket("remaining length: more than 4 bytes")


class _Reader:
    """Reads fields from one packet body; running out of bytes means the packet is malformed."""

    def __init__(self, body: bytes, what: str) -> None:
        self._body = body
        self._pos = 0
        self._what = what

    def _take(self, count: int, field: str) -> bytes:
        if self._pos + count > len(self._body):
            raise MalformedPacket(f"{self._what}: {field} runs past the end of the packet")
        chunk = self._body[self._pos : self._pos + count]
        self._pos += count
        return chunk

    def byte(self, field: str) -> int:
        return self._take(1, field)[0]

    def u16(self, field: str) -> int:
        value: int = struct.unpack("!H", self._take(2, field))[0]
        return value

    def binary(self, field: str) -> bytes:
        return self._take(self.u16(field), field)

    def string(self, field: str) -> str:
        raw = self.binary(field)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPacket(f"{self._what}: {field} is not valid UTF-8") from None
        if "\x00" in text:
            raise MalformedPacket(f"{self._what}: {field} contains U+0000")
        return text

    def packet_id(self) -> int:
        value = self.u16("packet identifier")
        if value == 0:
            raise MalformedPacket(f"{self._what}: packet identifier must be non-zero")
        return value

    def rest(self) -> bytes:
        chunk = self._body[self._pos :]
        self._pos = len(self._body)
        return chunk

    @property
    def at_end(self) -> bool:
        return self._pos == len(self._body)

    def finish(self) -> None:
        if not self.at_end:
            raise MalformedPacket(f"{self._what}: {len(self._body) - self._pos} unexpected bytes")


def _decode_body(type_code: int, flags: int, body: bytes) -> Packet:
    try:
        kind = PacketType(type_code)
    except ValueError:
        raise MalformedPacket(f"packet type {type_code} is reserved") from None
    if kind in _QOS2_TYPES:
        raise UnsupportedFeature(f"{kind.name}: QoS 2 is not supported")
    if kind is PacketType.PUBLISH:
        return _decode_publish(flags, body)
    expected_flags = 0b0010 if kind in _FLAGS_0010 else 0
    if flags != expected_flags:
        raise MalformedPacket(f"{kind.name}: fixed-header flags must be {expected_flags:#06b}")
    reader = _Reader(body, kind.name)
    packet: Packet
    if kind is PacketType.CONNECT:
        packet = _decode_connect(reader)
    elif kind is PacketType.CONNACK:
        ack_flags = reader.byte("acknowledge flags")
        if ack_flags & 0xFE:
            raise MalformedPacket("CONNACK: acknowledge flags bits 7-1 must be 0")
        packet = Connack(reader.byte("return code"), session_present=bool(ack_flags & 1))
    elif kind is PacketType.PUBACK:
        packet = Puback(reader.packet_id())
    elif kind is PacketType.SUBSCRIBE:
        packet = _decode_subscribe(reader)
    elif kind is PacketType.SUBACK:
        packet_id = reader.packet_id()
        codes = tuple(reader.rest())
        if not codes or any(code not in (0, 1, 2, 0x80) for code in codes):
            raise MalformedPacket("SUBACK: return codes must be 0, 1, 2 or 0x80, at least one")
        packet = Suback(packet_id, codes)
    elif kind is PacketType.UNSUBSCRIBE:
        packet_id = reader.packet_id()
        filters: list[str] = []
        while not reader.at_end:
            filters.append(_filter(reader.string("topic filter"), kind.name))
        if not filters:
            raise MalformedPacket("UNSUBSCRIBE: at least one topic filter is required")
        packet = Unsubscribe(packet_id, tuple(filters))
    elif kind is PacketType.UNSUBACK:
        packet = Unsuback(reader.packet_id())
    elif kind is PacketType.PINGREQ:
        packet = Pingreq()
    elif kind is PacketType.PINGRESP:
        packet = Pingresp()
    else:
        packet = Disconnect()
    reader.finish()
    return packet


def _decode_connect(reader: _Reader) -> Connect:
    protocol_name = reader.string("protocol name")
    protocol_level = reader.byte("protocol level")
    flags = reader.byte("connect flags")
    keep_alive = reader.u16("keep alive")
    if flags & 0x01:
        raise MalformedPacket("CONNECT: reserved connect flag must be 0")
    has_username, has_password = bool(flags & 0x80), bool(flags & 0x40)
    will_retain, will_qos, has_will = bool(flags & 0x20), (flags >> 3) & 0x03, bool(flags & 0x04)
    if has_password and not has_username:
        raise MalformedPacket("CONNECT: password flag set without username flag")
    if will_qos == 3:
        raise MalformedPacket("CONNECT: will QoS 3 is invalid")
    if not has_will and (will_qos or will_retain):
        raise MalformedPacket("CONNECT: will QoS and retain must be 0 without a will")
    client_id = reader.string("client identifier")
    will = None
    if has_will:
        will = Will(
            topic=reader.string("will topic"),
            message=reader.binary("will message"),
            qos=will_qos,
            retain=will_retain,
        )
    username = reader.string("user name") if has_username else None
    password = reader.binary("password") if has_password else None
    return Connect(
        client_id=client_id,
        username=username,
        password=password,
        clean_session=bool(flags & 0x02),
        keep_alive=keep_alive,
        will=will,
        protocol_name=protocol_name,
        protocol_level=protocol_level,
    )


def _decode_publish(flags: int, body: bytes) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MalformedPacket("PUBLISH: QoS 3 is invalid")
    if qos == 2:
        raise UnsupportedFeature("PUBLISH: QoS 2 is not supported")
    dup = bool(flags & 0x08)
    if dup and qos == 0:
        raise MalformedPacket("PUBLISH: DUP must be 0 for QoS 0")
    reader = _Reader(body, "PUBLISH")
    topic = reader.string("topic name")
    if not topic or "+" in topic or "#" in topic:
        raise MalformedPacket("PUBLISH: topic name must be non-empty and contain no wildcards")
    packet_id = reader.packet_id() if qos else None
    return Publish(
        topic=topic,
        payload=reader.rest(),
        qos=qos,
        packet_id=packet_id,
        dup=dup,
        retain=bool(flags & 0x01),
    )


def _decode_subscribe(reader: _Reader) -> Subscribe:
    packet_id = reader.packet_id()
    subscriptions: list[tuple[str, int]] = []
    while not reader.at_end:
        topic_filter = _filter(reader.string("topic filter"), "SUBSCRIBE")
        requested = reader.byte("requested QoS")
        if requested > 2:
            raise MalformedPacket("SUBSCRIBE: requested QoS byte must be 0, 1 or 2")
        subscriptions.append((topic_filter, requested))
    if not subscriptions:
        raise MalformedPacket("SUBSCRIBE: at least one topic filter is required")
    return Subscribe(packet_id, tuple(subscriptions))


def _filter(topic_filter: str, what: str) -> str:
    if not topic_filter:
        raise MalformedPacket(f"{what}: topic filter must be non-empty")
    return topic_filter


# -- encoding -----------------------------------------------------------------------------------


def encode(packet: Packet) -> bytes:
    """Encode one packet; raises ValueError for a value that no valid packet can carry."""
    flags = 0
    if isinstance(packet, Connect):
        kind, body = PacketType.CONNECT, _encode_connect(packet)
    elif isinstance(packet, Connack):
        kind = PacketType.CONNACK
        body = bytes((int(packet.session_present), packet.return_code))
    elif isinstance(packet, Publish):
        kind, flags, body = PacketType.PUBLISH, _publish_flags(packet), _encode_publish(packet)
    elif isinstance(packet, Puback):
        kind, body = PacketType.PUBACK, _u16(packet.packet_id)
    elif isinstance(packet, Subscribe):
        kind, flags = PacketType.SUBSCRIBE, 0b0010
        body = _u16(packet.packet_id) + b"".join(
            _string(topic_filter) + bytes((qos,)) for topic_filter, qos in packet.subscriptions
        )
    elif isinstance(packet, Suback):
        kind, body = PacketType.SUBACK, _u16(packet.packet_id) + bytes(packet.return_codes)
    elif isinstance(packet, Unsubscribe):
        kind, flags = PacketType.UNSUBSCRIBE, 0b0010
        body = _u16(packet.packet_id) + b"".join(_string(f) for f in packet.topic_filters)
    elif isinstance(packet, Unsuback):
        kind, body = PacketType.UNSUBACK, _u16(packet.packet_id)
    elif isinstance(packet, Pingreq):
        kind, body = PacketType.PINGREQ, b""
    elif isinstance(packet, Pingresp):
        kind, body = PacketType.PINGRESP, b""
    else:
        kind, body = PacketType.DISCONNECT, b""
    return bytes(((kind << 4) | flags,)) + _remaining_length(len(body)) + body


def _remaining_length(length: int) -> bytes:
    if not 0 <= length <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {length} is outside 0..{MAX_REMAINING_LENGTH}")
    out = bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def _u16(value: int) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{value} does not fit in two bytes")
    return struct.pack("!H", value)


def _binary(data: bytes) -> bytes:
    return _u16(len(data)) + data


def _string(text: str) -> bytes:
    return _binary(text.encode("utf-8"))


def _encode_connect(packet: Connect) -> bytes:
    flags = 0x02 if packet.clean_session else 0
    payload = _string(packet.client_id)
    if packet.will is not None:
        flags |= 0x04 | (packet.will.qos << 3) | (0x20 if packet.will.retain else 0)
        payload += _string(packet.will.topic) + _binary(packet.will.message)
    if packet.username is not None:
        flags |= 0x80
        payload += _string(packet.username)
    if packet.password is not None:
        flags |= 0x40
        payload += _binary(packet.password)
    header = _string(packet.protocol_name) + bytes((packet.protocol_level, flags))
    return header + _u16(packet.keep_alive) + payload


def _publish_flags(packet: Publish) -> int:
    if packet.qos not in (0, 1):
        raise ValueError(f"PUBLISH qos must be 0 or 1, got {packet.qos}")
    if (packet.packet_id is not None) != (packet.qos == 1):
        raise ValueError("PUBLISH packet_id must be set exactly when qos is 1")
    return (0x08 if packet.dup else 0) | (packet.qos << 1) | (0x01 if packet.retain else 0)


def _encode_publish(packet: Publish) -> bytes:
    packet_id = _u16(packet.packet_id) if packet.packet_id is not None else b""
    return _string(packet.topic) + packet_id + packet.payload
