"""Device lifecycle events as the hub produces them: values, in order, with sequence numbers."""

from __future__ import annotations

from emulator.hub.device_events import LifecycleEvent, LifecycleKind
from emulator.hub.endpoint import Hub
from sas import generate_sas_token

HUB = "toasters.azure-devices.net"
KEY = "OSANXEslinwdWI7CugTZIIMS97VdG65m3pD753neq7E="
NOW = 1_800_000_000.25


def connect(hub: Hub, device_id: str, now: float) -> int:
    token = generate_sas_token(f"{HUB}/devices/{device_id}", KEY, int(now) + 3600)
    return hub.connect(
        client_id=device_id,
        username=f"{HUB}/{device_id}/?api-version=2021-04-12",
        password=token.encode(),
        send=lambda *_: None,
        close=lambda: None,
        now=now,
    )


def test_hub_emits_created_connected_disconnected_deleted_in_order() -> None:
    """The four events come out as values; sequence numbers increase as strings."""
    events: list[LifecycleEvent] = []
    hub = Hub(HUB, clock=lambda: NOW + 3, on_event=events.append)
    hub.upsert_device("d-1", primary_key=KEY, secondary_key=KEY, twin=None, now=NOW)
    hub.upsert_device("d-1", primary_key=KEY, secondary_key=KEY, twin=None, now=NOW)  # no event
    assert connect(hub, "d-1", NOW + 1) == 0
    assert connect(hub, "d-1", NOW + 1) == 0  # a replacing connection: Connected only
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
    hub = Hub(HUB, on_event=events.append)
    identity = hub.upsert_device("d-2", primary_key=KEY, secondary_key=KEY, twin=None, now=NOW)
    token = generate_sas_token(f"{HUB}/devices/d-2", KEY, int(NOW) + 3600)
    hub.connect(
        client_id="d-2",
        username=f"{HUB}/d-2/?",
        password=token.encode(),
        send=lambda *_: None,
        close=lambda: closed.append(True),
        now=NOW,
    )
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
