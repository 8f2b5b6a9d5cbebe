"""IoT Hub's MQTT topic rules as a raw paho-mqtt client meets them, over TLS on 127.51.1.1:8883:
the `+` C2D filter, twin responses only to a `$iothub/twin/res/#` subscriber, the QoS the hub
publishes at, C2D messages that stay queued until PUBACKed, CleanSession, and a publish to a topic
the device may not use closing its connection."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from paho.mqtt import client as mqtt

from emulator.hub.endpoint import Hub
from sas import generate_sas_token
from tests.emulator.e2e.harness import RunningEmulator, add_device, options, wait_for

pytestmark = pytest.mark.e2e

BIND = "127.51.1.1"
HUB = "toasters.azure-devices.net"
KEY = "OSANXEslinwdWI7CugTZIIMS97VdG65m3pD753neq7E="
TWIN_RES = "$iothub/twin/res/#"
ANY_C2D = "devices/+/messages/devicebound/#"
SUBACK_FAILURE = 0x80


class Dropped(Exception):
    """Raised from `on_message` so that paho never sends the PUBACK (it acknowledges after)."""


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """One emulator for this module, on its own loopback address."""
    with RunningEmulator(options(tmp_path_factory.mktemp("rules"), BIND)) as running:
        yield running


class Device:
    """A paho-mqtt 1.6 client as a device would configure it (IoT Hub's MQTT docs), driven by
    `pump` on the test's thread so that no callback runs anywhere else."""

    def __init__(self, emulator: RunningEmulator, device_id: str, *, clean: bool = False) -> None:
        self.client = mqtt.Client(client_id=device_id, clean_session=clean, protocol=mqtt.MQTTv311)
        token = generate_sas_token(f"{HUB}/devices/{device_id}", KEY, int(time.time()) + 3600)
        self.client.username_pw_set(f"{HUB}/{device_id}/?api-version=2021-04-12", token)
        self.client.tls_set(
            ca_certs=str(emulator.emulator.ca_path), tls_version=ssl.PROTOCOL_TLSv1_2
        )
        self.messages: list[mqtt.MQTTMessage] = []
        self.granted: dict[int, tuple[int, ...]] = {}
        self.flags: dict[str, int] | None = None
        self.client.on_connect = self._connected
        self.client.on_subscribe = self._subscribed
        self.client.on_message = lambda _c, _u, message: self.messages.append(message)
        self.client.connect(BIND, 8883, keepalive=60)
        self.pump(lambda: self.flags is not None)

    def _connected(self, _client: Any, _userdata: Any, flags: dict[str, int], rc: int) -> None:
        assert rc == 0, f"CONNACK {rc}"
        self.flags = flags

    def _subscribed(self, _client: Any, _userdata: Any, mid: int, granted: Any) -> None:
        self.granted[mid] = tuple(granted)

    def pump(self, until: Callable[[], bool], timeout: float = 10) -> None:
        """Run paho's network loop until `until()` holds (fail after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, "condition not met in time"
            self.client.loop(timeout=0.05)

    def subscribe(self, topic_filter: str, qos: int = 1) -> int:
        """SUBSCRIBE and wait for the SUBACK; the granted QoS (0x80: refused)."""
        _, mid = self.client.subscribe(topic_filter, qos)
        self.pump(lambda: mid in self.granted)
        [granted] = self.granted[mid]
        return granted

    def receive(self, topic_prefix: str) -> mqtt.MQTTMessage:
        """Wait for the first message whose topic starts with `topic_prefix`."""

        def arrived() -> mqtt.MQTTMessage | None:
            return next((m for m in self.messages if m.topic.startswith(topic_prefix)), None)

        self.pump(lambda: arrived() is not None)
        message = arrived()
        assert message is not None
        return message

    def twin_round_trip(self, rid: str) -> mqtt.MQTTMessage:
        """Subscribe to twin responses and GET the twin: a barrier, since the hub writes to one
        connection in order, everything sent to the device before is in by the answer."""
        assert self.subscribe(TWIN_RES) == 1
        self.client.publish(f"$iothub/twin/GET/?$rid={rid}", b"", qos=1)
        return self.receive(f"$iothub/twin/res/200/?$rid={rid}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop(timeout=0.05)


def send_c2d(emulator: RunningEmulator, hub: Hub, device_id: str, body: bytes) -> None:
    emulator.call(lambda: hub.send_c2d(device_id, body, message_id=body.decode()))


def test_the_any_device_c2d_filter_is_granted_for_the_devices_own_messages(
    emulator: RunningEmulator,
) -> None:
    """`devices/+/messages/devicebound/#`, what azure-sdk-for-c and the RTOS clients send, is
    granted and receives this device's C2D only; another device's literal filter is refused."""
    hub = add_device(emulator, HUB, "plus-1", KEY)
    add_device(emulator, HUB, "plus-2", KEY)
    device = Device(emulator, "plus-1")
    try:
        assert device.subscribe(ANY_C2D) == 1
        assert device.subscribe("devices/plus-2/messages/devicebound/#") == SUBACK_FAILURE
        send_c2d(emulator, hub, "plus-2", b"for-the-other")
        send_c2d(emulator, hub, "plus-1", b"for-me")
        message = device.receive("devices/plus-1/messages/devicebound/")
        assert message.payload == b"for-me"
        assert "iothub-ack=none" in message.topic
        assert [m.payload for m in device.messages] == [b"for-me"]
    finally:
        device.close()


def test_twin_responses_reach_only_a_twin_res_subscriber_at_qos_0(
    emulator: RunningEmulator,
) -> None:
    """A twin GET before `$iothub/twin/res/#` is subscribed is never answered; after it, the
    answer comes at QoS 0."""
    add_device(emulator, HUB, "twin-rules", KEY)
    device = Device(emulator, "twin-rules")
    try:
        device.client.publish("$iothub/twin/GET/?$rid=early", b"", qos=1)
        answer = device.twin_round_trip("late")
        assert answer.qos == 0
        assert [m.topic for m in device.messages] == [answer.topic]
    finally:
        device.close()


def test_the_hub_publishes_at_the_qos_iot_hub_uses(emulator: RunningEmulator) -> None:
    """C2D to a QoS 0 subscription goes at QoS 0 (and is then off the queue); desired patches
    and method requests go at QoS 0 whatever was granted."""
    hub = add_device(emulator, HUB, "qos-1", KEY)
    device = Device(emulator, "qos-1")
    try:
        assert device.subscribe("devices/qos-1/messages/devicebound/#", qos=0) == 0
        assert device.subscribe("$iothub/twin/PATCH/properties/desired/#", qos=1) == 1
        assert device.subscribe("$iothub/methods/POST/#", qos=1) == 1
        send_c2d(emulator, hub, "qos-1", b"qos0")
        assert device.receive("devices/qos-1/messages/devicebound/").qos == 0
        assert emulator.call(lambda: hub.c2d_queue("qos-1")) == ()
        emulator.call(lambda: hub.update_desired("qos-1", {"fan": "on"}, now=time.time()))
        assert device.receive("$iothub/twin/PATCH/properties/desired/").qos == 0
        emulator.call(lambda: hub.invoke_method("qos-1", "ping", {}, on_response=lambda _: None))
        assert device.receive("$iothub/methods/POST/ping/").qos == 0
    finally:
        device.close()


def test_an_unacknowledged_c2d_message_comes_back_on_the_next_connection(
    emulator: RunningEmulator,
) -> None:
    """A QoS 1 C2D message whose PUBACK never came (the connection dropped) stays queued and is
    sent again to the next CleanSession 0 connection (Session Present 1, no SUBSCRIBE needed);
    that connection's PUBACK takes it off the queue."""
    hub = add_device(emulator, HUB, "redeliver", KEY)
    first = Device(emulator, "redeliver")
    assert first.flags == {"session present": 0}
    assert first.subscribe(ANY_C2D) == 1

    def refuse(*_: Any) -> None:
        raise Dropped

    first.client.on_message = refuse
    send_c2d(emulator, hub, "redeliver", b"important")
    with pytest.raises(Dropped):
        first.pump(lambda: False)
    first.client.socket().close()  # gone without a PUBACK
    wait_for(lambda: not emulator.call(lambda: hub.is_connected("redeliver")))
    assert [m.message_id for m in emulator.call(lambda: hub.c2d_queue("redeliver"))] == [
        "important"
    ]
    second = Device(emulator, "redeliver")
    try:
        assert second.flags == {"session present": 1}
        assert second.receive("devices/redeliver/messages/devicebound/").payload == b"important"
        second.twin_round_trip("after")  # the PUBACK went out before this GET
        assert emulator.call(lambda: hub.c2d_queue("redeliver")) == ()
    finally:
        second.close()


def test_a_clean_session_forgets_the_subscriptions_but_not_the_queue(
    emulator: RunningEmulator,
) -> None:
    """CleanSession 1: Session Present 0, no C2D until the device subscribes again, and then
    the message sent meanwhile arrives (the queue is the device's, not the session's)."""
    hub = add_device(emulator, HUB, "clean-1", KEY)
    kept = Device(emulator, "clean-1")
    assert kept.subscribe(ANY_C2D) == 1
    kept.close()
    clean = Device(emulator, "clean-1", clean=True)
    try:
        assert clean.flags == {"session present": 0}
        assert emulator.call(lambda: hub.subscriptions("clean-1")) == set()
        send_c2d(emulator, hub, "clean-1", b"waiting")
        clean.twin_round_trip("barrier")
        assert not any(m.topic.startswith("devices/") for m in clean.messages)
        assert clean.subscribe(ANY_C2D) == 1
        assert clean.receive("devices/clean-1/messages/devicebound/").payload == b"waiting"
    finally:
        clean.close()
    wait_for(lambda: not emulator.call(lambda: hub.is_connected("clean-1")))
    assert emulator.call(lambda: hub.subscriptions("clean-1")) == set()  # ended with it


@pytest.mark.parametrize(
    ("device_id", "topic"),
    [
        ("pub-1", "devices/pub-victim/messages/events/"),  # another device's telemetry
        ("pub-2", "devices/pub-victim/messages/devicebound/x"),  # another device's C2D
        ("pub-3", "devices/pub-3/modules/m1/messages/events/"),  # modules: not emulated
        ("pub-4", "$iothub/unknown/?$rid=1"),
        ("pub-5", "telemetry"),
    ],
)
def test_a_publish_to_a_topic_the_device_may_not_use_closes_the_connection(
    emulator: RunningEmulator, device_id: str, topic: str
) -> None:
    """IoT Hub closes the connection of a device that publishes where it may not: no PUBACK,
    nothing logged for anyone; the device may connect again and its next telemetry counts."""
    hub = add_device(emulator, HUB, device_id, KEY)
    add_device(emulator, HUB, "pub-victim", KEY)
    device = Device(emulator, device_id)
    closed: list[int] = []
    acknowledged: list[int] = []
    device.client.on_disconnect = lambda _c, _u, rc: closed.append(rc)
    device.client.on_publish = lambda _c, _u, mid: acknowledged.append(mid)
    logged = len(emulator.call(lambda: hub.messages))
    _, mid = device.client.publish(topic, b"not yours", qos=1)
    device.pump(lambda: bool(closed))
    assert closed[0] != 0  # the server closed it; the client did not ask
    assert mid not in acknowledged
    wait_for(lambda: not emulator.call(lambda: hub.is_connected(device_id)))
    assert len(emulator.call(lambda: hub.messages)) == logged
    again = Device(emulator, device_id)
    try:
        again.client.on_publish = lambda _c, _u, acked: acknowledged.append(acked)
        _, mid = again.client.publish(f"devices/{device_id}/messages/events/", b"mine", qos=1)
        again.pump(lambda: mid in acknowledged)
        assert [m.body for m in emulator.call(lambda: hub.messages)[logged:]] == [b"mine"]
    finally:
        again.close()
