"""Tests for emulator.events.eventgrid: lifecycle events in Event Grid's form, as the fixtures."""

from __future__ import annotations

import json

from emulator.events.eventgrid import event_grid_event, hub_resource_name
from emulator.hub.device_events import LifecycleEvent, LifecycleKind
from emulator.hub.endpoint import Hub
from store.lifecycle import parse_event
from tests.fixtures import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES / "eventgrid"
HUB = "toasters.azure-devices.net"
KEY = "OSANXEslinwdWI7CugTZIIMS97VdG65m3pD753neq7E="
NOW = 1_800_000_000.25


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
