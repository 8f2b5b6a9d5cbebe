"""Lifecycle events: the hub produces them as values, their Event Grid shape matches the fixtures,
and the delivery worker retries, drops what cannot succeed and never blocks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from emulator.events.delivery import EventDelivery, EventPostError, FunctionEventPoster
from emulator.events.eventgrid import event_grid_event, hub_resource_name
from emulator.hub.device_events import LifecycleEvent, LifecycleKind
from emulator.hub.endpoint import Hub
from sas import generate_sas_token
from store.lifecycle import parse_event
from tests.fixtures import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES / "eventgrid"
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


def test_event_grid_shape_matches_the_fixtures_and_the_app_parser() -> None:
    """Each event has the fixture's keys at every level, and store.lifecycle parses it."""
    hub = Hub(HUB)
    hub.upsert_device("d", primary_key=KEY, secondary_key=KEY, twin=None, now=NOW)
    device = hub.device_view("d")
    for name, kind in [
        ("device-created.json", LifecycleKind.CREATED),
        ("device-deleted.json", LifecycleKind.DELETED),
        ("device-connected.json", LifecycleKind.CONNECTED),
        ("device-disconnected.json", LifecycleKind.DISCONNECTED),
    ]:
        [fixture] = json.loads((FIXTURES / name).read_text())
        event = LifecycleEvent(
            kind=kind,
            hub=HUB,
            device_id="d",
            time=NOW,
            sequence_number="0" * 63 + "1" if kind.is_connection else None,
            device=None if kind.is_connection else device,
        )
        ours = event_grid_event(event, event_id="id-1")
        assert set(ours) == set(fixture)
        assert set(ours["data"]) == set(fixture["data"])
        assert ours["eventType"] == fixture["eventType"]
        if not kind.is_connection:
            assert set(fixture["data"]["twin"]) <= set(ours["data"]["twin"])
        assert ours["data"]["hubName"] == "toasters"
        assert ours["eventTime"] == "2027-01-15T08:00:00.2500000Z"
        parsed = parse_event(
            event_id=ours["id"],
            event_type=ours["eventType"],
            event_time=ours["eventTime"],
            data=ours["data"],
        )
        assert parsed.device_id == "d"
    assert hub_resource_name("127.0.0.3") == "127.0.0.3"


def test_delivery_retries_then_delivers_and_drops_400() -> None:
    """No answer and 500 are retried with the same id; 400 is dropped; order is kept."""
    answers = iter([EventPostError("x"), 500, 202, 400, 202])

    def handler(url: str, body: Any, headers: Any) -> int:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    poster = FunctionEventPoster(handler)

    async def run() -> EventDelivery:
        delivery = EventDelivery(
            "http://h/runtime/webhooks/EventGrid?functionName=f&code=k",
            poster,
            retry_delays=(0.001,),
            new_id=iter(["e1", "e2", "e3"]).__next__,
        )
        for device in ("a", "b", "c"):
            delivery.enqueue(
                LifecycleEvent(
                    kind=LifecycleKind.CONNECTED,
                    hub=HUB,
                    device_id=device,
                    time=NOW,
                    sequence_number="1",
                )
            )
        await delivery.start()
        assert await delivery.drain(5)
        await delivery.close()
        return delivery

    delivery = asyncio.run(run())
    ids = [body[0]["id"] for _, body, _ in poster.calls]
    assert ids == ["e1", "e1", "e1", "e2", "e3"]
    assert [headers["aeg-delivery-count"] for _, _, headers in poster.calls] == [
        "0",
        "1",
        "2",
        "0",
        "0",
    ]
    assert all(h["aeg-event-type"] == "Notification" for _, _, h in poster.calls)
    assert (delivery.delivered, delivery.dropped) == (2, 1)


def test_full_queue_drops_the_oldest_without_blocking() -> None:
    """enqueue never blocks: past max_queued the oldest event is dropped and counted."""
    delivery = EventDelivery("http://h/", FunctionEventPoster(lambda *_: 202), max_queued=2)
    for device in ("a", "b", "c"):
        delivery.enqueue(
            LifecycleEvent(kind=LifecycleKind.CREATED, hub=HUB, device_id=device, time=NOW)
        )
    assert (delivery.pending, delivery.dropped) == (2, 1)
