"""MQTT 3.1.1 codec: known bytes, round trips, and parsing whole, byte by byte and truncated."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.mqtt import (
    Connack,
    Connect,
    Disconnect,
    MalformedPacket,
    NeedMoreData,
    Packet,
    PacketTooLarge,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    UnsupportedFeature,
    Will,
    decode,
    encode,
)

# Hand-assembled from the MQTT 3.1.1 spec, independent of the encoder.
SDK_CONNECT = Connect(
    client_id="dev-001",
    username="hub/dev-001/?api-version=2019-10-01",
    password=b"SharedAccessSignature sr=x&sig=y&se=1",
    clean_session=False,
    keep_alive=60,
)
SDK_CONNECT_BYTES = (
    b"\x10\x5f"  # CONNECT, remaining length 95
    b"\x00\x04MQTT\x04"  # protocol name, level 4
    b"\xc0\x00\x3c"  # flags: username + password, CleanSession 0; keep-alive 60
    b"\x00\x07dev-001"
    b"\x00\x23hub/dev-001/?api-version=2019-10-01"
    b"\x00\x25SharedAccessSignature sr=x&sig=y&se=1"
)
KNOWN: list[tuple[Packet, bytes]] = [
    (SDK_CONNECT, SDK_CONNECT_BYTES),
    (Connack(0), b"\x20\x02\x00\x00"),
    (Connack(5, session_present=False), b"\x20\x02\x00\x05"),
    (Connack(0, session_present=True), b"\x20\x02\x01\x00"),
    (Publish(topic="a/b", payload=b"hi"), b"\x30\x07\x00\x03a/bhi"),
    (
        Publish(topic="a", payload=b"x", qos=1, packet_id=258, dup=True, retain=True),
        b"\x3b\x06\x00\x01a\x01\x02x",
    ),
    (Puback(1), b"\x40\x02\x00\x01"),
    (
        Subscribe(2, (("$dps/registrations/res/#", 1),)),
        b"\x82\x1d\x00\x02\x00\x18$dps/registrations/res/#\x01",
    ),
    (Suback(2, (1, 0x80)), b"\x90\x04\x00\x02\x01\x80"),
    (Unsubscribe(3, ("a/#", "b")), b"\xa2\x0a\x00\x03\x00\x03a/#\x00\x01b"),
    (Unsuback(3), b"\xb0\x02\x00\x03"),
    (Pingreq(), b"\xc0\x00"),
    (Pingresp(), b"\xd0\x00"),
    (Disconnect(), b"\xe0\x00"),
    (
        Connect(
            client_id="c",
            clean_session=True,
            keep_alive=0,
            will=Will(topic="w", message=b"m", qos=1, retain=True),
        ),
        b"\x10\x13\x00\x04MQTT\x04\x2e\x00\x00\x00\x01c\x00\x01w\x00\x01m",
    ),
]


@pytest.mark.parametrize(("packet", "wire"), KNOWN)
def test_encode_matches_known_bytes(packet: Packet, wire: bytes) -> None:
    """Each packet encodes to the bytes assembled by hand from the spec."""
    assert encode(packet) == wire


@pytest.mark.parametrize(("packet", "wire"), KNOWN)
def test_decode_whole_buffer(packet: Packet, wire: bytes) -> None:
    """A whole packet decodes to its value and consumes exactly its bytes."""
    assert decode(wire) == (packet, len(wire))


@pytest.mark.parametrize(("packet", "wire"), KNOWN)
def test_decode_ignores_trailing_bytes(packet: Packet, wire: bytes) -> None:
    """Bytes after a packet are left for the next decode."""
    assert decode(wire + b"\xc0\x00\x30") == (packet, len(wire))


@pytest.mark.parametrize(("packet", "wire"), KNOWN)
def test_every_truncated_prefix_needs_more_data(packet: Packet, wire: bytes) -> None:
    """Every proper prefix of a packet asks for more bytes instead of failing."""
    for end in range(len(wire)):
        with pytest.raises(NeedMoreData):
            decode(wire[:end])


@pytest.mark.parametrize(("packet", "wire"), KNOWN)
def test_decode_fed_one_byte_at_a_time(packet: Packet, wire: bytes) -> None:
    """Growing the buffer one byte at a time yields the packet exactly at its last byte."""
    buffer = bytearray()
    decoded = []
    for byte in wire:
        buffer.append(byte)
        try:
            decoded.append(decode(buffer))
        except NeedMoreData:
            continue
    assert decoded == [(packet, len(wire))]


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_152, b"\x80\x80\x80\x01"),
    ],
)
def test_remaining_length_boundaries(length: int, header: bytes) -> None:
    """Remaining lengths at the 1-4 byte boundaries encode as the spec's table says."""
    packet = Publish(topic="t", payload=b"\x00" * (length - 3)) if length else Pingreq()
    wire = encode(packet)
    assert wire[1 : 1 + len(header)] == header
    assert decode(wire, max_packet_size=length) == (packet, len(wire))


def test_oversized_packet_refused_before_its_body_arrives() -> None:
    """A remaining length above the limit fails as soon as the length bytes are in."""
    with pytest.raises(PacketTooLarge, match="exceeds the limit of 1000"):
        decode(b"\x30\xe9\x07", max_packet_size=1000)


@pytest.mark.parametrize(
    ("wire", "error", "message"),
    [
        (b"\x30\xff\xff\xff\xff\x01", MalformedPacket, "more than 4 bytes"),
        (b"\x00\x00", MalformedPacket, "reserved"),
        (b"\xf0\x00", MalformedPacket, "reserved"),
        (b"\xc1\x00", MalformedPacket, "PINGREQ: fixed-header flags"),
        (b"\x80\x06\x00\x01\x00\x01a\x01", MalformedPacket, "SUBSCRIBE: fixed-header flags"),
        (b"\x36\x04\x00\x01a\x00", MalformedPacket, "QoS 3"),
        (b"\x34\x05\x00\x01a\x00\x01", UnsupportedFeature, "QoS 2"),
        (b"\x50\x02\x00\x01", UnsupportedFeature, "PUBREC"),
        (b"\x62\x02\x00\x01", UnsupportedFeature, "PUBREL"),
        (b"\x70\x02\x00\x01", UnsupportedFeature, "PUBCOMP"),
        (b"\x38\x04\x00\x01ax", MalformedPacket, "DUP"),
        (b"\x30\x04\x00\x01+x", MalformedPacket, "wildcards"),
        (b"\x30\x02\x00\x00", MalformedPacket, "non-empty"),
        (b"\x32\x05\x00\x01a\x00\x00", MalformedPacket, "non-zero"),
        (b"\x30\x03\x00\x05a", MalformedPacket, "topic name runs past"),
        (b"\x30\x04\x00\x02\xc3\x28", MalformedPacket, "UTF-8"),
        (b"\x30\x04\x00\x02a\x00", MalformedPacket, "U\\+0000"),
        (b"\x82\x02\x00\x01", MalformedPacket, "at least one topic filter"),
        (b"\x82\x06\x00\x01\x00\x01a\x03", MalformedPacket, "requested QoS"),
        (b"\xa2\x02\x00\x01", MalformedPacket, "at least one topic filter"),
        (b"\x40\x03\x00\x01\x00", MalformedPacket, "1 unexpected bytes"),
        (b"\xe0\x01\x00", MalformedPacket, "DISCONNECT: 1 unexpected"),
        (b"\x20\x02\x02\x00", MalformedPacket, "acknowledge flags"),
        (b"\x90\x03\x00\x01\x03", MalformedPacket, "SUBACK: return codes"),
        (b"\x10\x0d\x00\x04MQTT\x04\x01\x00\x00\x00\x01c", MalformedPacket, "reserved connect"),
        (b"\x10\x0d\x00\x04MQTT\x04\x40\x00\x00\x00\x01c", MalformedPacket, "without username"),
        (b"\x10\x0d\x00\x04MQTT\x04\x18\x00\x00\x00\x01c", MalformedPacket, "will QoS 3"),
        (b"\x10\x0d\x00\x04MQTT\x04\x20\x00\x00\x00\x01c", MalformedPacket, "without a will"),
        (b"\x10\x0d\x00\x04MQTT\x04\x80\x00\x00\x00\x01c", MalformedPacket, "user name runs"),
    ],
)
def test_malformed_packets_raise_protocol_errors(
    wire: bytes, error: type[Exception], message: str
) -> None:
    """Each violation raises its own ProtocolError subclass naming the packet and field."""
    with pytest.raises(error, match=message):
        decode(wire)


def test_connect_repr_hides_the_password() -> None:
    """A CONNECT's repr never shows the SAS token it carries."""
    assert "SharedAccessSignature" not in repr(SDK_CONNECT)
    assert "<hidden>" in repr(SDK_CONNECT)


@pytest.mark.parametrize(
    "packet",
    [
        Publish(topic="t", qos=1),
        Publish(topic="t", qos=0, packet_id=1),
        Publish(topic="t", qos=2, packet_id=1),
        Puback(0x10000),
    ],
)
def test_encode_rejects_impossible_values(packet: Packet) -> None:
    """The encoder refuses values no valid packet can carry."""
    with pytest.raises(ValueError, match=r"qos|packet_id|two bytes"):
        encode(packet)


# -- property-based round trips ------------------------------------------------------------------

_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20
)
_topic = _text.filter(lambda t: t and "+" not in t and "#" not in t)
_filter = _text.filter(bool)
_packet_id = st.integers(1, 0xFFFF)
_connects = st.builds(
    Connect,
    client_id=_text,
    username=st.none() | _text,
    password=st.none(),
    clean_session=st.booleans(),
    keep_alive=st.integers(0, 0xFFFF),
    will=st.none()
    | st.builds(
        Will,
        topic=_topic,
        message=st.binary(max_size=10),
        qos=st.integers(0, 2),
        retain=st.booleans(),
    ),
)
_connects_with_password = st.builds(
    Connect, client_id=_text, username=_text, password=st.binary(max_size=40)
)
_publishes = st.one_of(
    st.builds(Publish, topic=_topic, payload=st.binary(max_size=300), retain=st.booleans()),
    st.builds(
        Publish,
        topic=_topic,
        payload=st.binary(max_size=300),
        qos=st.just(1),
        packet_id=_packet_id,
        dup=st.booleans(),
        retain=st.booleans(),
    ),
)
PACKETS = st.one_of(
    _connects,
    _connects_with_password,
    st.builds(Connack, st.integers(0, 5), st.booleans()),
    _publishes,
    st.builds(Puback, _packet_id),
    st.builds(
        Subscribe,
        _packet_id,
        st.lists(st.tuples(_filter, st.integers(0, 2)), min_size=1, max_size=4).map(tuple),
    ),
    st.builds(
        Suback, _packet_id, st.lists(st.sampled_from((0, 1, 2, 0x80)), min_size=1).map(tuple)
    ),
    st.builds(Unsubscribe, _packet_id, st.lists(_filter, min_size=1, max_size=4).map(tuple)),
    st.builds(Unsuback, _packet_id),
    st.just(Pingreq()),
    st.just(Pingresp()),
    st.just(Disconnect()),
)


@given(PACKETS)
def test_round_trip(packet: Packet) -> None:
    """decode(encode(p)) gives back p and consumes every byte."""
    wire = encode(packet)
    assert decode(wire) == (packet, len(wire))


@given(st.lists(PACKETS, min_size=1, max_size=5), st.data())
def test_stream_split_anywhere_decodes_the_same(packets: list[Packet], data: st.DataObject) -> None:
    """A stream of packets cut into arbitrary chunks decodes to the same packets in order."""
    stream = b"".join(encode(p) for p in packets)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    buffer, decoded, start = bytearray(), [], 0
    for end in [*cuts, len(stream)]:
        buffer += stream[start:end]
        start = max(start, end)
        while True:
            try:
                packet, used = decode(buffer)
            except NeedMoreData:
                break
            del buffer[:used]
            decoded.append(packet)
    assert decoded == packets
    assert not buffer
