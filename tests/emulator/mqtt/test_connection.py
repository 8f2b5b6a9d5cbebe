"""The server connection engine, driven by a tiny client engine with no sockets."""

from __future__ import annotations

import pytest

from emulator.mqtt import (
    Connack,
    ConnackCode,
    Connect,
    ConnectionState,
    Disconnect,
    LocalProtocolError,
    ProtocolViolation,
    Puback,
    Publish,
    ServerConnection,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    encode,
)
from tests.emulator.mqtt.client_engine import ClientEngine, accepted_pair


def test_connect_then_connack_accepts() -> None:
    """A CONNECT becomes an event; CONNACK 0 moves the engine to CONNECTED."""
    client, server = ClientEngine(), ServerConnection()
    events = server.receive_data(client.connect("dev-001", username="u", password=b"sas"))
    assert events == [
        Connect(
            client_id="dev-001", username="u", password=b"sas", keep_alive=60, clean_session=False
        )
    ]
    assert server.state is ConnectionState.CONNECTING
    assert client.receive_data(server.send(Connack(0, session_present=True))) == [
        Connack(0, session_present=True)
    ]
    assert server.state is ConnectionState.CONNECTED


def test_refusing_connack_closes() -> None:
    """A non-zero CONNACK is sent and the connection is over."""
    client, server = ClientEngine(), ServerConnection()
    server.receive_data(client.connect("dev-001"))
    assert client.receive_data(server.send(Connack(ConnackCode.NOT_AUTHORIZED))) == [Connack(5)]
    assert server.closed
    assert server.receive_data(client.publish("t", b"x")) == []


def test_qos1_publish_is_acknowledged_only_when_accepted() -> None:
    """The engine sends no PUBACK by itself: a QoS 1 PUBLISH is acknowledged when the shell
    accepts it (`acknowledge`), after whatever it queued before; a refused one never is."""
    client, server = accepted_pair()
    [event] = server.receive_data(client.publish("$dps/registrations/PUT/x", b"{}"))
    assert isinstance(event, Publish)
    assert (event.topic, event.payload, event.qos) == ("$dps/registrations/PUT/x", b"{}", 1)
    assert server.data_to_send() == b""
    packets = client.receive_data(server.acknowledge(event.packet_id or 0))
    assert packets == [Puback(event.packet_id or 0)]
    [refused] = server.receive_data(client.publish("devices/other/messages/events/", b"{}"))
    assert isinstance(refused, Publish)
    assert server.data_to_send() == b""


def test_qos0_publish_gets_no_puback() -> None:
    """A QoS 0 PUBLISH is reported without any automatic reply."""
    client, server = accepted_pair()
    [event] = server.receive_data(client.publish("devices/d/messages/events/", b"x", qos=0))
    assert isinstance(event, Publish)
    assert server.data_to_send() == b""


def test_subscribe_is_answered_by_the_server_decision() -> None:
    """SUBSCRIBE becomes an event; the SUBACK carries the codes the shell grants."""
    client, server = accepted_pair()
    [event] = server.receive_data(client.subscribe("$iothub/methods/POST/#"))
    assert event == Subscribe(1, (("$iothub/methods/POST/#", 1),))
    assert client.receive_data(server.send(Suback(1, (1,)))) == [Suback(1, (1,))]


def test_unsubscribe_and_pingreq_are_answered_automatically() -> None:
    """UNSUBACK and PINGRESP need no decision; PINGREQ produces no event."""
    _, server = accepted_pair()
    events = server.receive_data(encode(Unsubscribe(9, ("a/#",))) + b"\xc0\x00")
    assert events == [Unsubscribe(9, ("a/#",))]
    assert server.data_to_send() == encode(Unsuback(9)) + b"\xd0\x00"


def test_server_publishes_get_fresh_packet_ids_until_acknowledged() -> None:
    """QoS 1 server PUBLISHes are numbered 1, 2, ... and tracked until the client PUBACKs."""
    client, server = accepted_pair()
    first = client.receive_data(server.send(Publish(topic="a", payload=b"1", qos=1)))
    second = client.receive_data(server.send(Publish(topic="b", payload=b"2", qos=1)))
    assert [p.packet_id for p in first + second if isinstance(p, Publish)] == [1, 2]
    assert [p.topic for p in server.unacknowledged] == ["a", "b"]
    assert server.receive_data(client.puback(1)) == [Puback(1)]
    assert [p.topic for p in server.unacknowledged] == ["b"]


def test_packet_ids_skip_those_still_in_flight() -> None:
    """After wrapping at 65535 the engine skips ids still awaiting PUBACK."""
    client, server = accepted_pair()
    server.send(Publish(topic="held", qos=1))  # id 1, never acknowledged
    for packet_id in range(2, 0x10000):
        server.send(Publish(topic="t", qos=1))
        server.receive_data(client.puback(packet_id))
    server.send(Publish(topic="next", qos=1))
    assert [p.packet_id for p in server.unacknowledged] == [1, 2]


def test_disconnect_closes() -> None:
    """DISCONNECT is reported and ends the connection."""
    _, server = accepted_pair()
    assert server.receive_data(encode(Disconnect())) == [Disconnect()]
    assert server.closed
    assert server.receive_timeout == 60 * 1.5


@pytest.mark.parametrize(
    ("before_connect", "expected"),
    [(True, "expected CONNECT, got PUBLISH"), (False, "may not send CONNECT")],
)
def test_out_of_order_packets_are_violations(before_connect: bool, expected: str) -> None:
    """PUBLISH before CONNECT and a second CONNECT both end the connection."""
    client = ClientEngine()
    if before_connect:
        server = ServerConnection()
        events = server.receive_data(client.publish("t", b"x"))
    else:
        client, server = accepted_pair()
        events = server.receive_data(client.connect("again"))
    assert len(events) == 1
    assert isinstance(events[0], ProtocolViolation)
    assert expected in events[0].reason
    assert server.closed


def test_server_only_packets_from_a_client_are_violations() -> None:
    """A client sending CONNACK is a protocol violation."""
    _, server = accepted_pair()
    [event] = server.receive_data(encode(Connack(0)))
    assert event == ProtocolViolation("a client may not send CONNACK here")


def test_events_before_a_malformed_packet_are_kept() -> None:
    """Good packets in the same chunk as a malformed one are still reported, in order."""
    client, server = accepted_pair()
    events = server.receive_data(
        client.publish("ok", b"1") + b"\x36\x04\x00\x01a\x00" + b"\xe0\x00"
    )
    assert isinstance(events[0], Publish)
    assert isinstance(events[1], ProtocolViolation)
    assert "QoS 3" in events[1].reason
    assert len(events) == 2


def test_qos2_publish_is_a_violation() -> None:
    """QoS 2 is outside what this server speaks: the connection ends."""
    _, server = accepted_pair()
    [event] = server.receive_data(b"\x34\x05\x00\x01a\x00\x01")
    assert isinstance(event, ProtocolViolation)
    assert "QoS 2" in event.reason


def test_oversized_packet_is_a_violation_before_its_body() -> None:
    """A packet above max_packet_size ends the connection as soon as its length is known."""
    client, server = ClientEngine(), ServerConnection(max_packet_size=100)
    server.receive_data(client.connect("dev-001"))
    server.send(Connack(0))
    [event] = server.receive_data(b"\x30\xc8\x01")
    assert isinstance(event, ProtocolViolation)
    assert "exceeds the limit of 100" in event.reason


@pytest.mark.parametrize(
    ("connect", "code", "reason"),
    [
        (Connect(client_id="c", protocol_name="MQIsdp", protocol_level=3), 1, "not MQTT 3.1.1"),
        (Connect(client_id="", clean_session=False), 2, "empty client identifier"),
    ],
)
def test_unacceptable_connect_is_refused_with_its_code(
    connect: Connect, code: int, reason: str
) -> None:
    """An old protocol level gets CONNACK 1, an empty persistent client id CONNACK 2."""
    server = ServerConnection()
    [event] = server.receive_data(encode(connect))
    assert isinstance(event, ProtocolViolation)
    assert reason in event.reason
    assert ClientEngine().receive_data(server.data_to_send()) == [Connack(code)]


def test_receive_timeout_follows_keep_alive() -> None:
    """Before CONNECT the connect timeout applies, then 1.5 x keep-alive, and 0 means none."""
    client = ClientEngine()
    server = ServerConnection(connect_timeout=3.0)
    assert server.receive_timeout == 3.0
    server.receive_data(client.connect("a", keep_alive=4))
    assert server.receive_timeout == 6.0
    idle = ServerConnection()
    idle.receive_data(client.connect("b", keep_alive=0))
    assert idle.receive_timeout is None


def test_sends_in_the_wrong_state_are_local_errors() -> None:
    """The shell cannot CONNACK twice or publish before the connection is accepted."""
    client, server = ClientEngine(), ServerConnection()
    server.receive_data(client.connect("dev-001"))
    with pytest.raises(LocalProtocolError, match="PUBLISH is not allowed in state CONNECTING"):
        server.send(Publish(topic="t"))
    server.send(Connack(0))
    with pytest.raises(LocalProtocolError, match="CONNACK is not allowed in state CONNECTED"):
        server.send(Connack(0))


def test_whole_session_fed_one_byte_at_a_time_matches_whole() -> None:
    """Feeding a session byte by byte yields the same events as feeding it at once."""
    client = ClientEngine()
    stream = (
        client.connect("dev-001", username="u", password=b"p")
        + client.subscribe("$iothub/twin/res/#")
        + client.publish("$iothub/twin/GET/?$rid=1", b" ")
        + client.publish("devices/dev-001/messages/events/a=b", b"x" * 300, qos=0)
        + b"\xc0\x00"
        + encode(Disconnect())
    )
    whole = ServerConnection()
    whole_events = whole.receive_data(stream)
    split = ServerConnection()
    split_events = []
    for index in range(len(stream)):
        split_events += split.receive_data(stream[index : index + 1])
    assert whole_events == split_events
    assert [type(e).__name__ for e in whole_events] == [
        "Connect",
        "Subscribe",
        "Publish",
        "Publish",
        "Disconnect",
    ]
    assert whole.data_to_send() == split.data_to_send()
