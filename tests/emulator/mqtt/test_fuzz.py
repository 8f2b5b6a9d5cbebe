"""The sans-IO server engine fed arbitrary bytes, split anywhere: it never raises, never buffers
more than one packet's worth, and says nothing more once it has reported a violation."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.mqtt import (
    Connack,
    Connect,
    ConnectionState,
    Event,
    Packet,
    ProtocolViolation,
    Publish,
    ServerConnection,
    Suback,
    Subscribe,
    encode,
)
from tests.emulator.mqtt.test_codec import PACKETS

MAX_PACKET_SIZE = 256  # small, so that arbitrary bytes reach the bound often
HEADER_BYTES = 5  # fixed header: the type byte and at most 4 remaining-length bytes
VALID_CONNECT = encode(
    Connect(client_id="dev-001", username="hub/dev-001/?api-version=2019-10-01", keep_alive=60)
)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def buffered(engine: ServerConnection) -> int:
    """Bytes the engine holds of a packet not yet complete (its private input buffer)."""
    return len(engine._inbox)


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at `cuts` (positions, any order, repeats allowed: empty chunks are fed too)."""
    edges = [0, *sorted(cut % (len(data) + 1) for cut in cuts), len(data)]
    return [data[start:end] for start, end in itertools.pairwise(edges)]


def answer_like_the_shell(engine: ServerConnection, events: list[Event]) -> None:
    """Decide as the shell does: accept each CONNECT, grant each SUBSCRIBE, acknowledge each
    QoS 1 PUBLISH; stop at the first event after which the engine is closed."""
    for event in events:
        if engine.closed:
            return
        if isinstance(event, Connect):
            engine.send(Connack(0))
        elif isinstance(event, Subscribe):
            engine.send(Suback(event.packet_id, tuple(1 for _ in event.subscriptions)))
        elif isinstance(event, Publish) and event.packet_id is not None:
            engine.acknowledge(event.packet_id)
    engine.data_to_send()


def feed(data: bytes, cuts: list[int]) -> list[Event]:
    """Feed `data` in chunks to a fresh engine, checking the invariants after every chunk."""
    engine = ServerConnection(max_packet_size=MAX_PACKET_SIZE)
    seen: list[Event] = []
    for chunk in chunks(data, cuts):
        ended = engine.closed
        events = engine.receive_data(chunk)  # nothing may escape: a bad byte is an event
        if ended:
            assert events == [], "events after the connection ended"
        violations = [i for i, event in enumerate(events) if isinstance(event, ProtocolViolation)]
        assert violations in ([], [len(events) - 1]), "a violation must be the last event"
        if violations:
            assert engine.state is ConnectionState.CLOSED
        assert buffered(engine) < HEADER_BYTES + MAX_PACKET_SIZE
        answer_like_the_shell(engine, events)
        seen += events
    return seen


def remaining_length(value: int) -> bytes:
    """MQTT's variable-length encoding of a remaining length, 1 to 4 bytes [2.2.3]."""
    encoded = bytearray()
    while True:
        value, digit = divmod(value, 128)
        encoded.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(encoded)


# A fixed header of any type and flags announcing any length (often past MAX_PACKET_SIZE), then
# a body that may be shorter or longer than announced: what a hostile client sends to be buffered.
framed = st.builds(
    lambda first, length, body: bytes([first]) + remaining_length(length) + body,
    st.integers(0, 255),
    st.integers(0, 268_435_455) | st.integers(0, 2 * MAX_PACKET_SIZE),
    st.binary(max_size=64) | st.integers(0, 2 * MAX_PACKET_SIZE).map(bytes),  # n zero bytes
)
garbage = st.binary(max_size=2 * MAX_PACKET_SIZE) | st.lists(framed, max_size=3).map(b"".join)
cuts = st.lists(st.integers(min_value=0, max_value=10_000), max_size=12)


@FUZZ
@given(garbage, cuts)
def test_arbitrary_bytes_never_raise_and_stay_bounded(data: bytes, cut_at: list[int]) -> None:
    """Any bytes, split anywhere: events or a violation, never an exception or a growing buffer."""
    feed(data, cut_at)


@FUZZ
@given(garbage, cuts)
def test_a_valid_connect_then_arbitrary_bytes(data: bytes, cut_at: list[int]) -> None:
    """After a valid CONNECT, arbitrary bytes split anywhere keep the invariants; the CONNECT
    itself is always reported first."""
    events = feed(VALID_CONNECT + data, cut_at)
    assert events
    assert isinstance(events[0], Connect)


@FUZZ
@given(st.lists(PACKETS, max_size=6), garbage, cuts)
def test_valid_packets_then_arbitrary_bytes(
    packets: list[Packet], tail: bytes, cut_at: list[int]
) -> None:
    """A CONNECT, packets of any type (some not allowed from a client), then garbage."""
    stream = VALID_CONNECT + b"".join(encode(packet) for packet in packets) + tail
    feed(stream, cut_at)


@FUZZ
@given(st.binary(min_size=1, max_size=64), cuts)
def test_nothing_is_reported_after_a_violation(data: bytes, cut_at: list[int]) -> None:
    """Once a violation is reported, whatever follows (even a valid stream) yields nothing."""
    engine = ServerConnection(max_packet_size=MAX_PACKET_SIZE)
    events = engine.receive_data(b"\x20\x02\x00\x00")  # a CONNACK from the client
    assert [type(event) for event in events] == [ProtocolViolation]
    for chunk in chunks(VALID_CONNECT + data, cut_at):
        assert engine.receive_data(chunk) == []
        assert buffered(engine) == 0
    assert engine.data_to_send() == b""
