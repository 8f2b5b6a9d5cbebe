"""IoT Hub device side: SAS CONNECT, sessions, twin, telemetry, C2D and direct methods, no sockets."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.endpoints import DPS, ConnectAnswer, Outbound, connack_of, connect_target
from emulator.hub.c2d import QUEUE_LIMIT, AckMode, DeviceMaximumQueueDepthExceeded
from emulator.hub.directory import Hubs
from emulator.hub.endpoint import Hub
from emulator.hub.messages import MethodResponse
from emulator.hub.registry import DeviceNotFound, DeviceNotOnline, UnknownHub
from emulator.hub.twin import InitialTwin, TwinDocument, TwinError
from sas import generate_sas_token
from tests.fixtures import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES
E2 = next(v for v in json.loads((FIXTURES / "sas" / "vectors.json").read_text()) if v["id"] == "E2")
HUB = "127.0.0.3"  # the host name the E2 vector was signed for
KEY = E2["key"]
OTHER_KEY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
WRONG_KEY = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
NOW = 1_900_000_000.0
USERNAME = f"{HUB}/dev-001/?api-version=2019-10-01&DeviceClientType=x"


TWIN_RES = "$iothub/twin/res/#"
C2D = "devices/dev-001/messages/devicebound/#"


class Client:
    """The shell's side of one connection: records what the hub sends (topic, payload, QoS, the
    PUBACK hook) and whether it closed it."""

    def __init__(self) -> None:
        self.sent: list[Outbound] = []
        self.qos: list[int] = []
        self.hooks: list[Callable[[], None] | None] = []
        self.closed = False

    def send(
        self,
        topic: str,
        payload: bytes,
        /,
        *,
        qos: int = 1,
        on_acknowledged: Callable[[], None] | None = None,
    ) -> None:
        self.sent.append(Outbound(topic, payload))
        self.qos.append(qos)
        self.hooks.append(on_acknowledged)

    def puback(self, index: int) -> None:
        """The client acknowledges the QoS 1 PUBLISH it got `index`-th."""
        hook = self.hooks[index]
        assert hook is not None, "not a QoS 1 PUBLISH with a hook"
        hook()

    def close(self) -> None:
        self.closed = True

    def json(self, index: int = -1) -> object:
        return json.loads(self.sent[index].payload)


def new_hub() -> Hub:
    hub = Hub(HUB, clock=lambda: NOW)
    hub.upsert_device("dev-001", primary_key=KEY, secondary_key=OTHER_KEY, twin=None, now=NOW)
    return hub


def connect(
    hub: Hub,
    client: Client,
    password: bytes | None = None,
    *,
    now: float = NOW,
    clean_session: bool = False,
) -> int:
    """CONNECT as dev-001 (CleanSession 0, as the SDKs); the CONNACK code."""
    return connect_answer(hub, client, password, now=now, clean_session=clean_session).code


def connect_answer(
    hub: Hub,
    client: Client,
    password: bytes | None = None,
    *,
    now: float = NOW,
    clean_session: bool = False,
) -> ConnectAnswer:
    token = E2["token"].encode() if password is None else password
    return connack_of(
        hub.connect(
            client_id="dev-001",
            username=USERNAME,
            password=token,
            send=client.send,
            close=client.close,
            now=now,
            clean_session=clean_session,
        )
    )


def online(hub: Hub | None = None, *filters: str, qos: int = 1) -> tuple[Hub, Client]:
    hub = hub or new_hub()
    client = Client()
    assert connect(hub, client) == 0
    for topic_filter in filters:
        assert hub.subscribe(client_id="dev-001", topic_filter=topic_filter, qos=qos)
    return hub, client


def publish(hub: Hub, client: Client, topic: str, payload: bytes = b" ") -> None:
    hub.publish(client_id="dev-001", topic=topic, payload=payload, send=client.send, now=NOW)


def test_connect_accepts_the_sdk_token_vector() -> None:
    """The E2 token the real SDK produces for dev-001 is accepted with CONNACK 0."""
    hub = new_hub()
    assert connect(hub, Client()) == 0
    assert hub.is_connected("dev-001")


def test_connect_accepts_the_secondary_key() -> None:
    """A token signed with the secondary key is accepted too."""
    hub = new_hub()
    hub.upsert_device("dev-001", primary_key=OTHER_KEY, secondary_key=KEY, twin=None, now=NOW)
    assert connect(hub, Client()) == 0


@pytest.mark.parametrize(
    ("password", "now", "why"),
    [
        (
            generate_sas_token(f"{HUB}/devices/dev-001", WRONG_KEY, 2_000_000_000).encode(),
            NOW,
            "wrong key",
        ),
        (E2["token"].encode(), 2_000_000_001.0, "expired"),
        (
            generate_sas_token(f"{HUB}/devices/dev-002", KEY, 2_000_000_000).encode(),
            NOW,
            "other resource",
        ),
        (b"SharedAccessSignature sig=x", NOW, "malformed"),
        (b"\xff\xfe", NOW, "not UTF-8"),
    ],
)
def test_bad_credentials_get_connack_5(password: bytes, now: float, why: str) -> None:
    """Wrong key, expired, other resource, malformed or binary passwords: CONNACK 5."""
    hub = new_hub()
    assert connect(hub, Client(), password, now=now) == 5, why
    assert not hub.is_connected("dev-001")


def test_unknown_disabled_or_mismatched_device_gets_connack_5() -> None:
    """Unknown device, disabled device, or a client id unlike the username's device: 5."""
    hub = Hub(HUB, clock=lambda: NOW)
    assert connect(hub, Client()) == 5
    hub.upsert_device(
        "dev-001", primary_key=KEY, secondary_key=KEY, twin=None, now=NOW, enabled=False
    )
    assert connect(hub, Client()) == 5
    hub.upsert_device("dev-001", primary_key=KEY, secondary_key=KEY, twin=None, now=NOW)
    code = hub.connect(
        client_id="dev-002",
        username=USERNAME,
        password=E2["token"].encode(),
        send=Client().send,
        close=Client().close,
        now=NOW,
    )
    assert code == 5


def test_a_new_connection_drops_the_old_one() -> None:
    """One connection per device id: the older connection is closed, the newer one served."""
    hub, first = online()
    second = Client()
    assert connect(hub, second) == 0
    assert first.closed
    assert not second.closed


def test_twin_responses_need_the_twin_res_subscription_and_go_at_qos_0() -> None:
    """A GET before `$iothub/twin/res/#` is subscribed gets no answer (as on IoT Hub); after the
    SUBSCRIBE it gets 200 with desired and reported `$version`, at QoS 0."""
    hub, client = online()
    publish(hub, client, "$iothub/twin/GET/?$rid=r0")
    assert client.sent == []
    assert hub.subscribe(client_id="dev-001", topic_filter=TWIN_RES)
    publish(hub, client, "$iothub/twin/GET/?$rid=r1")
    assert client.sent[0].topic == "$iothub/twin/res/200/?$rid=r1"
    assert client.json() == {"desired": {"$version": 1}, "reported": {"$version": 1}}
    assert client.qos == [0]


def test_reported_patch_answers_204_with_the_new_version() -> None:
    """A reported PATCH is applied and answered 204 with `$version`, empty body."""
    hub, client = online(None, TWIN_RES)
    publish(
        hub,
        client,
        "$iothub/twin/PATCH/properties/reported/?$rid=r3",
        b'{"temperature": 22.5, "fw": {"version": "1.2.3"}}',
    )
    assert client.sent == [Outbound("$iothub/twin/res/204/?$rid=r3&$version=2", b"")]
    twin = hub.twin("dev-001")
    assert twin is not None
    assert twin.reported == {"temperature": 22.5, "fw": {"version": "1.2.3"}}


@pytest.mark.parametrize("body", [b"not json", b'{"bad.key": 1}', b"[1]"])
def test_invalid_reported_patch_answers_400(body: bytes) -> None:
    """Non-JSON or a patch the twin rules refuse gets 400 and leaves the twin unchanged."""
    hub, client = online(None, TWIN_RES)
    publish(hub, client, "$iothub/twin/PATCH/properties/reported/?$rid=r", body)
    assert client.sent[0].topic == "$iothub/twin/res/400/?$rid=r"
    twin = hub.twin("dev-001")
    assert twin is not None
    assert twin.reported_version == 1


def test_desired_patch_is_pushed_with_its_version_to_a_subscriber() -> None:
    """A service desired patch reaches a subscribed device with `$version`, at QoS 0."""
    hub, client = online(None, "$iothub/twin/PATCH/properties/desired/#")
    hub.update_desired("dev-001", {"targetTemperature": 21.5, "fanSpeed": "high"}, now=NOW)
    assert client.sent[0].topic == "$iothub/twin/PATCH/properties/desired/?$version=2"
    assert client.json() == {"targetTemperature": 21.5, "fanSpeed": "high", "$version": 2}
    assert client.qos == [0]


def test_desired_patch_is_not_pushed_without_a_subscription() -> None:
    """Without the desired subscription the twin changes but nothing is pushed."""
    hub, client = online()
    hub.update_desired("dev-001", {"a": 1}, now=NOW)
    assert client.sent == []
    with pytest.raises(TwinError):
        hub.update_desired("dev-001", ["not", "an", "object"], now=NOW)


def test_telemetry_is_logged_with_its_property_bag() -> None:
    """The topic's property bag is decoded into system and application properties."""
    hub, client = online()
    topic = (
        "devices/dev-001/messages/events/%24.mid=msg-1&%24.cid=corr-1&%24.ct=application%2Fjson"
        "&%24.ce=utf-8&alert=true&sp%20ace%26amp=a%2Fb%20c&flag"
    )
    publish(hub, client, topic, b"x")
    publish(hub, client, "devices/dev-001/messages/events/", b"plain")
    first, second = hub.messages
    assert first.body == b"x"
    assert first.system_properties == {
        "$.mid": "msg-1",
        "$.cid": "corr-1",
        "$.ct": "application/json",
        "$.ce": "utf-8",
    }
    assert first.properties == {"alert": "true", "sp ace&amp": "a/b c", "flag": None}
    assert (second.body, dict(second.properties)) == (b"plain", {})
    assert client.sent == []


def test_c2d_is_delivered_with_the_real_hub_property_bag() -> None:
    """C2D to a subscribed device carries $.mid, $.to, $.cid, $.ct, $.ce, iothub-ack and encoded
    app properties, at QoS 1."""
    hub, client = online(None, C2D)
    hub.send_c2d(
        "dev-001",
        b'{"c2d":"hello"}',
        message_id="c2d-1",
        correlation_id="corr-1",
        content_type="application/json",
        content_encoding="utf-8",
        properties={"color": "red blue", "flag": None},
    )
    assert client.sent == [
        Outbound(
            "devices/dev-001/messages/devicebound/%24.mid=c2d-1"
            "&%24.to=%2Fdevices%2Fdev-001%2Fmessages%2FdeviceBound&%24.cid=corr-1"
            "&%24.ct=application%2Fjson&%24.ce=utf-8&iothub-ack=none&color=red%20blue&flag",
            b'{"c2d":"hello"}',
        )
    ]
    assert client.qos == [1]


def test_c2d_expiry_and_ack_set_by_the_sender_travel_in_the_bag() -> None:
    """An expiry the sender chose is `$.exp`; the `iothub-ack` it asked for is carried as is."""
    hub, client = online(None, C2D)
    hub.send_c2d("dev-001", b"x", message_id="m", expiry=NOW + 60, ack=AckMode.FULL, now=NOW)
    assert client.sent[0].topic == (
        "devices/dev-001/messages/devicebound/%24.mid=m"
        "&%24.to=%2Fdevices%2Fdev-001%2Fmessages%2FdeviceBound"
        "&%24.exp=2030-03-17T17%3A47%3A40.000Z&iothub-ack=full"
    )


def test_c2d_waits_for_the_device_and_survives_reconnect() -> None:
    """C2D sent while offline is delivered on reconnect, the subscription having persisted."""
    hub, first = online(None, C2D)
    hub.disconnect(client_id="dev-001")
    hub.send_c2d("dev-001", b"queued", message_id="m1")
    assert first.sent == []
    second = Client()
    assert connect(hub, second) == 0
    assert [o.payload for o in second.sent] == [b"queued"]


def test_c2d_leaves_the_queue_only_when_acknowledged() -> None:
    """A QoS 1 C2D message stays queued until its PUBACK; a connection that drops first gets it
    again on the next connection, once, and the PUBACK there takes it off the queue."""
    hub, first = online(None, C2D)
    hub.send_c2d("dev-001", b"important", message_id="m1")
    assert [m.message_id for m in hub.c2d_queue("dev-001")] == ["m1"]
    hub.drop_connection("dev-001")
    second = Client()
    assert connect(hub, second) == 0
    assert [o.payload for o in second.sent] == [b"important"]
    hub.subscribe(client_id="dev-001", topic_filter=C2D)  # a re-SUBSCRIBE sends nothing twice
    assert len(second.sent) == 1
    second.puback(0)
    assert hub.c2d_queue("dev-001") == ()
    first.puback(0)  # a late hook from the old connection changes nothing
    assert hub.c2d_queue("dev-001") == ()


def test_c2d_to_a_qos_0_subscription_goes_at_qos_0_and_is_done() -> None:
    """A QoS 0 C2D subscription gets QoS 0 PUBLISHes, and the message leaves the queue as sent."""
    hub, client = online(None, C2D, qos=0)
    hub.send_c2d("dev-001", b"fire and forget", message_id="m1")
    assert client.qos == [0]
    assert client.hooks == [None]
    assert hub.c2d_queue("dev-001") == ()


def test_c2d_expires_unsent() -> None:
    """A message whose time to live runs out while the device is away is never sent."""
    clock = [NOW]
    hub = Hub(HUB, clock=lambda: clock[0])
    hub.upsert_device("dev-001", primary_key=KEY, secondary_key=OTHER_KEY, twin=None, now=NOW)
    hub.send_c2d("dev-001", b"stale", message_id="old", expiry=NOW + 10)
    hub.send_c2d("dev-001", b"fresh", message_id="new")  # the default hour
    clock[0] = NOW + 11
    _, client = online(hub, C2D)
    assert [o.payload for o in client.sent] == [b"fresh"]


def test_c2d_queue_holds_50_and_refuses_more() -> None:
    """An offline device's queue holds QUEUE_LIMIT messages; one more is refused (403004) and
    nothing queued is lost."""
    hub = new_hub()
    for index in range(QUEUE_LIMIT):
        hub.send_c2d("dev-001", str(index).encode(), message_id=f"m{index}")
    with pytest.raises(DeviceMaximumQueueDepthExceeded) as refused:
        hub.send_c2d("dev-001", b"one too many", message_id="late")
    assert refused.value.status == 403
    _, client = online(hub, C2D)
    assert [o.payload for o in client.sent] == [str(i).encode() for i in range(QUEUE_LIMIT)]


def test_any_device_c2d_filter_is_granted_for_the_connections_own_messages() -> None:
    """`devices/+/messages/devicebound/#` (azure-sdk-for-c, RTOS) is granted and receives the
    device's own C2D; another device's literal filter is refused."""
    hub, client = online(None, "devices/+/messages/devicebound/#")
    hub.send_c2d("dev-001", b"hello", message_id="m1")
    assert [o.payload for o in client.sent] == [b"hello"]
    assert not hub.subscribe(
        client_id="dev-001", topic_filter="devices/dev-002/messages/devicebound/#"
    )


def test_clean_session_starts_empty_and_ends_with_the_connection() -> None:
    """CleanSession 1 discards the kept subscriptions (Session Present 0) and its own end with
    it; C2D waits in the device's queue meanwhile, for a new subscription."""
    hub, _ = online(None, C2D, TWIN_RES)
    hub.disconnect(client_id="dev-001")
    assert connect_answer(hub, Client(), clean_session=False).session_present
    hub.disconnect(client_id="dev-001")
    client = Client()
    answer = connect_answer(hub, client, clean_session=True)
    assert (answer.code, answer.session_present) == (0, False)
    assert hub.subscriptions("dev-001") == set()
    hub.send_c2d("dev-001", b"waits", message_id="m1")
    assert client.sent == []
    hub.subscribe(client_id="dev-001", topic_filter=C2D)
    assert [o.payload for o in client.sent] == [b"waits"]
    hub.disconnect(client_id="dev-001")
    assert not connect_answer(hub, Client(), clean_session=False).session_present
    assert hub.subscriptions("dev-001") == set()


def test_direct_method_round_trip() -> None:
    """A method request (QoS 0) reaches a subscribed device; its response reaches the caller."""
    hub, client = online(None, "$iothub/methods/POST/#")
    responses: list[MethodResponse] = []
    rid = hub.invoke_method("dev-001", "reboot", {"delay": 5}, on_response=responses.append)
    assert client.sent == [Outbound(f"$iothub/methods/POST/reboot/?$rid={rid}", b'{"delay": 5}')]
    assert client.qos == [0]
    publish(hub, client, f"$iothub/methods/res/200/?$rid={rid}", b'{"ok": true}')
    assert responses == [MethodResponse(200, {"ok": True})]
    publish(hub, client, f"$iothub/methods/res/200/?$rid={rid}", b"{}")
    assert len(responses) == 1


def test_direct_method_needs_an_online_subscribed_device() -> None:
    """Invoking a method on an offline or unsubscribed device raises DeviceNotOnline."""
    hub, _ = online()
    with pytest.raises(DeviceNotOnline):
        hub.invoke_method("dev-001", "reboot", None, on_response=lambda r: None)
    with pytest.raises(DeviceNotFound):
        hub.invoke_method("nobody", "reboot", None, on_response=lambda r: None)


def test_a_caller_waiting_for_methods_is_told_when_the_device_subscribes() -> None:
    """`when_methods_ready` fires once the connected device subscribes to methods (at once when
    it already is); a cancelled wait never fires."""
    hub = new_hub()
    woken: list[str] = []
    cancel = hub.when_methods_ready("dev-001", lambda: woken.append("cancelled"))
    cancel()
    hub.when_methods_ready("dev-001", lambda: woken.append("first"))
    _, client = online(hub)
    assert woken == []
    hub.subscribe(client_id="dev-001", topic_filter="$iothub/methods/POST/#")
    assert woken == ["first"]
    hub.when_methods_ready("dev-001", lambda: woken.append("already"))
    assert woken == ["first", "already"]
    assert client.sent == []


_DEVICE_TOPICS = (
    "devices/dev-001/messages/events/",
    "$iothub/twin/GET/",
    "$iothub/twin/PATCH/properties/reported/",
    "$iothub/methods/res/",
)


@pytest.mark.parametrize(
    "topic",
    [
        "devices/dev-002/messages/events/",
        "devices/dev-001/messages/devicebound/x",
        "devices/dev-001/modules/m1/messages/events/",
        "$iothub/twin/PATCH/properties/desired/?$version=3",
        "$iothub/methods/POST/reboot/?$rid=1",
        "devices/dev-001/messages/events",
        "anything",
        "",
    ],
)
def test_a_publish_to_a_topic_the_device_may_not_use_is_refused(topic: str) -> None:
    """Another device's telemetry, the hub's own directions, modules, unknown topics: refused
    (the shell then closes the connection); nothing is logged."""
    hub, client = online()
    refused = hub.publish(
        client_id="dev-001", topic=topic, payload=b"{}", send=client.send, now=NOW
    )
    assert refused is False
    assert hub.messages == ()
    assert client.sent == []


@settings(max_examples=300, deadline=None)
@given(
    topic=st.text(max_size=80)
    | st.tuples(
        st.sampled_from((*_DEVICE_TOPICS, "devices/dev-002/messages/events/", "$iothub/")),
        st.text(max_size=60),
    ).map("".join),
    payload=st.binary(max_size=64),
)
def test_any_topic_is_handled_or_refused_never_raises(topic: str, payload: bytes) -> None:
    """Whatever topic a device publishes to: accepted exactly when it starts with one of the
    device's own topic prefixes, refused otherwise; never an exception."""
    hub, client = online()
    accepted = hub.publish(
        client_id="dev-001", topic=topic, payload=payload, send=client.send, now=NOW
    )
    assert accepted is topic.startswith(_DEVICE_TOPICS)


def test_subscribe_grants_only_the_sdk_filters() -> None:
    """The device filters are granted; another device's C2D or a wildcard is refused."""
    hub, _ = online()
    assert hub.subscribe(client_id="dev-001", topic_filter="$iothub/twin/res/#")
    assert not hub.subscribe(
        client_id="dev-001", topic_filter="devices/dev-002/messages/devicebound/#"
    )
    assert not hub.subscribe(client_id="dev-001", topic_filter="#")


def test_unsubscribe_stops_pushes() -> None:
    """After UNSUBSCRIBE the desired patch is no longer pushed."""
    hub, client = online(None, "$iothub/twin/PATCH/properties/desired/#")
    hub.unsubscribe(client_id="dev-001", topic_filter="$iothub/twin/PATCH/properties/desired/#")
    hub.update_desired("dev-001", {"a": 1}, now=NOW)
    assert client.sent == []


def test_delete_device_drops_connection_and_identity() -> None:
    """Deleting a device closes its connection and later CONNECTs are refused."""
    hub, client = online()
    hub.delete_device("dev-001")
    assert client.closed
    assert hub.twin("dev-001") is None
    assert connect(hub, Client()) == 5


def test_hubs_directory_routes_and_assigns() -> None:
    """CONNECT usernames go to DPS or a hub by host; Hubs finds hubs case-insensitively, and
    upsert keeps the twin unless a new one is given."""
    hubs = Hubs(["Toasters.azure-devices.net", "heatpumps.azure-devices.net"], clock=lambda: NOW)
    assert hubs.hub_names() == ["Toasters.azure-devices.net", "heatpumps.azure-devices.net"]
    target = connect_target("toasters.azure-devices.net/dev-001/?api-version=2019-10-01")
    assert target == "toasters.azure-devices.net"
    assert hubs.hub(target) is hubs.hub("Toasters.azure-devices.net")
    assert connect_target("0ne00000001/registrations/dev-001/api-version=2019-03-31") == DPS
    assert connect_target("elsewhere.net/dev-001/?api-version=1") == "elsewhere.net"
    assert connect_target("nothing") is None
    seeded = TwinDocument.new(InitialTwin(tags={"site": "a"}, desired={"fw": "1"}), now=NOW)
    hubs.upsert_device(
        "heatpumps.azure-devices.net", "d", primary_key=KEY, secondary_key=KEY, twin=seeded
    )
    hubs.upsert_device(
        "heatpumps.azure-devices.net", "d", primary_key=OTHER_KEY, secondary_key=KEY, twin=None
    )
    assert hubs.device_twin("heatpumps.azure-devices.net", "d") == seeded
    hubs.delete_device("heatpumps.azure-devices.net", "d")
    assert hubs.device_twin("heatpumps.azure-devices.net", "d") is None
    with pytest.raises(UnknownHub):
        hubs.device_twin("nowhere", "d")
