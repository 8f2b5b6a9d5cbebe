"""Device lifecycle events as the hub produces them: values, in order, with sequence numbers;
connection events only for connections that subscribed to C2D or sent telemetry, at once or as
snapshots."""

from __future__ import annotations

from typing import Any

from emulator.endpoints import connack_of
from emulator.hub.device_events import LifecycleEvent, LifecycleKind
from emulator.hub.endpoint import Hub
from emulator.hub.presence import ConnectionEvents, PresencePolicy
from sas import generate_sas_token

HUB = "toasters.azure-devices.net"
KEY = "OSANXEslinwdWI7CugTZIIMS97VdG65m3pD753neq7E="
NOW = 1_800_000_000.25
IMMEDIATE = PresencePolicy(mode=ConnectionEvents.IMMEDIATE)
C2D = "devices/{}/messages/devicebound/#"


def ignore(*_: Any, **__: Any) -> None:
    """A `Send` or `Close` that goes nowhere."""


def connect(hub: Hub, device_id: str, now: float, *, clean_session: bool = False) -> int:
    token = generate_sas_token(f"{HUB}/devices/{device_id}", KEY, int(now) + 3600)
    answer = hub.connect(
        client_id=device_id,
        username=f"{HUB}/{device_id}/?api-version=2021-04-12",
        password=token.encode(),
        send=ignore,
        close=ignore,
        now=now,
        clean_session=clean_session,
    )
    return connack_of(answer).code


def telemetry(hub: Hub, device_id: str, now: float) -> None:
    topic = f"devices/{device_id}/messages/events/"
    assert hub.publish(client_id=device_id, topic=topic, payload=b"{}", send=ignore, now=now)


def kinds(events: list[LifecycleEvent]) -> list[LifecycleKind]:
    return [event.kind for event in events]


def test_hub_emits_created_connected_disconnected_deleted_in_order() -> None:
    """The four events come out as values; sequence numbers increase as strings."""
    events: list[LifecycleEvent] = []
    hub = Hub(HUB, clock=lambda: NOW + 3, on_event=events.append, presence=IMMEDIATE)
    hub.upsert_device("d-1", primary_key=KEY, secondary_key=KEY, twin=None, now=NOW)
    hub.upsert_device("d-1", primary_key=KEY, secondary_key=KEY, twin=None, now=NOW)  # no event
    assert connect(hub, "d-1", NOW + 1) == 0
    assert hub.subscribe(client_id="d-1", topic_filter=C2D.format("d-1"))
    assert connect(hub, "d-1", NOW + 1) == 0  # replacing, resuming the C2D subscription
    hub.disconnect(client_id="d-1")
    hub.delete_device("d-1", now=NOW + 4)
    kinds = [event.kind for event in events]
    assert kinds == [
        LifecycleKind.CREATED,
        LifecycleKind.CONNECTED,
        LifecycleKind.CONNECTED,
        LifecycleKind.DISCONNECTED,
        LifecycleKind.DELETED,
    ]
    sequences = [event.sequence_number for event in events if event.kind.is_connection]
    assert all(isinstance(s, str) and len(s) == 64 for s in sequences)
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == 3
    assert events[0].device is not None
    assert events[0].device.device_id == "d-1"


def test_disabling_through_the_service_drops_the_connection_with_an_event() -> None:
    """update_device(enabled=False) closes the live connection and emits Disconnected."""
    events: list[LifecycleEvent] = []
    closed: list[bool] = []
    hub = Hub(HUB, on_event=events.append, presence=IMMEDIATE)
    identity = hub.upsert_device("d-2", primary_key=KEY, secondary_key=KEY, twin=None, now=NOW)
    token = generate_sas_token(f"{HUB}/devices/d-2", KEY, int(NOW) + 3600)
    hub.connect(
        client_id="d-2",
        username=f"{HUB}/d-2/?",
        password=token.encode(),
        send=ignore,
        close=lambda: closed.append(True),
        now=NOW,
    )
    telemetry(hub, "d-2", NOW)
    hub.update_device(
        "d-2",
        if_match=identity.etag,
        primary_key=KEY,
        secondary_key=KEY,
        enabled=False,
        status_reason="retired",
        iot_edge=False,
        now=NOW + 1,
    )
    assert closed == [True]
    assert events[-1].kind is LifecycleKind.DISCONNECTED
    assert connect(hub, "d-2", NOW + 2) == 5


def test_a_connection_counts_only_once_it_subscribes_to_c2d_or_sends_telemetry() -> None:
    """CONNECT alone, twin traffic or a methods subscription report nothing, in and out; the
    first telemetry message reports Connected, and its end Disconnected."""
    events: list[LifecycleEvent] = []
    hub = Hub(HUB, clock=lambda: NOW + 9, on_event=events.append, presence=IMMEDIATE)
    hub.upsert_device("d-3", primary_key=KEY, secondary_key=KEY, twin=None, now=NOW)
    events.clear()
    assert connect(hub, "d-3", NOW) == 0
    hub.subscribe(client_id="d-3", topic_filter="$iothub/methods/POST/#")
    hub.publish(
        client_id="d-3", topic="$iothub/twin/GET/?$rid=1", payload=b"", send=ignore, now=NOW
    )
    hub.disconnect(client_id="d-3")
    assert events == []
    assert connect(hub, "d-3", NOW + 1) == 0
    telemetry(hub, "d-3", NOW + 2)
    telemetry(hub, "d-3", NOW + 3)
    hub.disconnect(client_id="d-3")
    assert kinds(events) == [LifecycleKind.CONNECTED, LifecycleKind.DISCONNECTED]
    assert [event.time for event in events] == [NOW + 2, NOW + 9]


def test_a_clean_session_that_has_not_subscribed_reports_the_device_gone() -> None:
    """A CleanSession 1 connection replacing a counted one drops the C2D subscription with the
    session: Disconnected, until it subscribes again."""
    events: list[LifecycleEvent] = []
    hub = Hub(HUB, on_event=events.append, presence=IMMEDIATE)
    hub.upsert_device("d-4", primary_key=KEY, secondary_key=KEY, twin=None, now=NOW)
    events.clear()
    connect(hub, "d-4", NOW)
    hub.subscribe(client_id="d-4", topic_filter="devices/+/messages/devicebound/#")
    connect(hub, "d-4", NOW + 1, clean_session=True)
    hub.subscribe(client_id="d-4", topic_filter=C2D.format("d-4"))
    assert kinds(events) == [
        LifecycleKind.CONNECTED,
        LifecycleKind.DISCONNECTED,
        LifecycleKind.CONNECTED,
    ]


def test_snapshots_report_each_changed_device_once_per_window_with_its_latest_state() -> None:
    """By default nothing goes out until the 60 s window closes; then one event per device that
    changed: a device that came and went gets Disconnected, one that stayed Connected."""
    events: list[LifecycleEvent] = []
    start = 1_800_000_020.0  # 20 s into a window (windows start at multiples of 60 s)
    hub = Hub(HUB, on_event=events.append)
    for device in ("came-and-went", "stayed"):
        hub.upsert_device(device, primary_key=KEY, secondary_key=KEY, twin=None, now=start)
    events.clear()
    for device in ("came-and-went", "stayed"):
        connect(hub, device, start)
        telemetry(hub, device, start + 1)
    hub.disconnect(client_id="came-and-went")
    assert events == []
    assert hub.report_connections(start + 39) == 0
    assert hub.report_connections(start + 40.3) == 2  # looked a little late
    assert [(event.device_id, event.kind) for event in events] == [
        ("came-and-went", LifecycleKind.DISCONNECTED),
        ("stayed", LifecycleKind.CONNECTED),
    ]
    assert {event.time for event in events} == {start + 40}  # the snapshot's moment
    assert hub.report_connections(start + 200) == 0
