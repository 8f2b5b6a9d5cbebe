"""Lifecycle events: parsing every Event Grid fixture, the transition table, and order/redelivery
independence (Hypothesis)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.lifecycle import (
    InvalidEvent,
    LifecycleEvent,
    LifecycleKind,
    UnknownEventType,
    hub_matches,
    parse_event,
    transition,
)
from store.records import ConnectionState, DeviceRecord, HubIdentity
from tests.fixtures import FIXTURES as ALL_FIXTURES
from tests.store.strategies import sequence_numbers

FIXTURES = ALL_FIXTURES / "eventgrid"
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
HOST = "egtesthub1.azure-devices.net"


def load(name: str) -> dict[str, Any]:
    """The single event of an Event Grid fixture."""
    events = json.loads((FIXTURES / name).read_text())
    assert isinstance(events, list)
    assert len(events) == 1
    event: dict[str, Any] = events[0]
    return event


def parse(envelope: dict[str, Any]) -> LifecycleEvent:
    """parse_event over an Event Grid envelope dict."""
    return parse_event(
        event_id=envelope.get("id"),
        event_type=envelope.get("eventType"),
        event_time=envelope.get("eventTime"),
        data=envelope.get("data"),
    )


@pytest.mark.parametrize(
    ("name", "kind", "sequence"),
    [
        ("device-created.json", LifecycleKind.CREATED, None),
        ("device-deleted.json", LifecycleKind.DELETED, None),
        ("device-connected.json", LifecycleKind.CONNECTED, "000000000000000001D4132452F67CE200000002000000000000000000000001"),
        ("device-disconnected.json", LifecycleKind.DISCONNECTED, "000000000000000001D4132452F67CE200000002000000000000000000000002"),
    ],
)  # fmt: skip
def test_every_fixture_parses(name: str, kind: LifecycleKind, sequence: str | None) -> None:
    """Each fixture parses into its kind, hub, device, time and sequence number."""
    envelope = load(name)
    event = parse(envelope)
    assert event.kind is kind
    assert (event.hub_name, event.device_id, event.module_id) == (
        "egtesthub1",
        "LogicAppTestDevice",
        None,
    )
    assert event.event_id == envelope["id"]
    assert event.event_time.tzinfo is UTC
    assert event.event_time.isoformat().startswith(envelope["eventTime"][:26])
    assert event.sequence_number == sequence


def test_fixture_story_created_connected_disconnected_deleted() -> None:
    """The four fixtures applied in order give a created, then disconnected, then deleted device."""
    row = None
    for name in ("device-created.json", "device-connected.json", "device-disconnected.json"):
        row = transition(row, parse(load(name))) or row
    assert row is not None
    assert (row.hub, row.hub_identity, row.connection_state) == (
        "egtesthub1",
        HubIdentity.PRESENT,
        ConnectionState.DISCONNECTED,
    )
    deleted = transition(row, parse(load("device-deleted.json")))
    assert deleted is not None
    assert deleted.hub_identity is HubIdentity.DELETED


def test_fixture_connected_after_disconnected_is_stale() -> None:
    """The connected fixture (lower sequenceNumber) delivered after the disconnected one is ignored."""
    row = transition(None, parse(load("device-disconnected.json")))
    assert row is not None
    assert transition(row, parse(load("device-connected.json"))) is None


def test_redelivery_changes_nothing() -> None:
    """Every fixture applied twice: the second application reports no change."""
    for name in ("device-created.json", "device-connected.json", "device-disconnected.json"):
        event = parse(load(name))
        row = transition(None, event)
        assert row is not None
        assert transition(row, event) is None


@pytest.mark.parametrize(
    ("event_type", "expected"),
    [("Microsoft.Devices.DeviceTelemetry", UnknownEventType), ("Something.Else", UnknownEventType), (None, UnknownEventType)],
)  # fmt: skip
def test_unknown_types(event_type: object, expected: type[Exception]) -> None:
    """Types other than the four device lifecycle events raise UnknownEventType."""
    envelope = load("device-created.json") | {"eventType": event_type}
    with pytest.raises(expected, match="eventType"):
        parse(envelope)


@pytest.mark.parametrize(
    ("name", "mutate", "field"),
    [
        ("device-created.json", lambda e: e["data"].pop("deviceId"), "data.deviceId"),
        ("device-created.json", lambda e: e["data"].update(hubName=""), "data.hubName"),
        ("device-created.json", lambda e: e.update(data=[]), "data: expected an object"),
        ("device-created.json", lambda e: e.update(eventTime="soon"), "eventTime"),
        ("device-created.json", lambda e: e.update(id=""), "id: expected"),
        ("device-connected.json", lambda e: e["data"].pop("deviceConnectionStateEventInfo"), "deviceConnectionStateEventInfo"),
        ("device-connected.json", lambda e: e["data"]["deviceConnectionStateEventInfo"].update(sequenceNumber=5), "sequenceNumber"),
        ("device-connected.json", lambda e: e["data"].update(moduleId=3), "data.moduleId"),
    ],
)  # fmt: skip
def test_invalid_events_name_the_field(name: str, mutate: Any, field: str) -> None:
    """A malformed event raises InvalidEvent naming the field."""
    envelope = load(name)
    mutate(envelope)
    with pytest.raises(InvalidEvent, match=field):
        parse(envelope)


def test_module_events_are_ignored() -> None:
    """A non-empty moduleId marks a module event, which never changes the device row."""
    envelope = load("device-connected.json")
    envelope["data"]["moduleId"] = "DeviceModuleID"
    assert transition(None, parse(envelope)) is None
    envelope["data"]["moduleId"] = ""
    assert transition(None, parse(envelope)) is not None


def test_hub_matching() -> None:
    """An event's short hub name matches the inventory's host name, case-insensitively."""
    assert hub_matches("EgTestHub1.azure-devices.net", "egtesthub1")
    assert hub_matches("egtesthub1", "egtesthub1")
    assert not hub_matches("egtesthub10.azure-devices.net", "egtesthub1")
    assert not hub_matches(None, "egtesthub1")


def event(
    kind: LifecycleKind, *, hub: str = "egtesthub1", minute: int = 0, seq: int | None = None
) -> LifecycleEvent:
    """A lifecycle event for device d1."""
    return LifecycleEvent(
        event_id=f"{kind.name}-{minute}-{seq}",
        kind=kind,
        hub_name=hub,
        device_id="d1",
        event_time=T0 + timedelta(minutes=minute),
        sequence_number=None if seq is None else f"{seq:064X}",
    )


def provisioned_row(hub: str = HOST) -> DeviceRecord:
    """A device provisioned onto `hub`."""
    return DeviceRecord(registration_id="d1", device_id="d1", hub=hub, provisioning_count=1)


def test_created_keeps_the_provisioned_host_name() -> None:
    """DeviceCreated on the device's hub keeps the full host name and marks the identity present."""
    row = transition(provisioned_row(), event(LifecycleKind.CREATED))
    assert row is not None
    assert (row.hub, row.hub_identity) == (HOST, HubIdentity.PRESENT)


def test_created_on_another_hub_moves_the_device() -> None:
    """DeviceCreated on a different hub records that hub."""
    row = transition(provisioned_row(), event(LifecycleKind.CREATED, hub="otherhub"))
    assert row is not None
    assert row.hub == "otherhub"


def test_deleted_from_old_hub_after_move_is_ignored() -> None:
    """DPS deletes the old identity after a re-provision: that delete does not mark the device deleted."""
    assert transition(provisioned_row(), event(LifecycleKind.DELETED, hub="oldhub")) is None


def test_stale_identity_events_are_ignored() -> None:
    """A Created older than the last applied Deleted does not resurrect the identity."""
    deleted = transition(provisioned_row(), event(LifecycleKind.DELETED, minute=10))
    assert deleted is not None
    assert deleted.hub_identity is HubIdentity.DELETED
    assert transition(deleted, event(LifecycleKind.CREATED, minute=5)) is None
    recreated = transition(deleted, event(LifecycleKind.CREATED, minute=15))
    assert recreated is not None
    assert recreated.hub_identity is HubIdentity.PRESENT


def test_deleted_unknown_device_is_ignored() -> None:
    """Nothing to mark for a device the inventory does not know."""
    assert transition(None, event(LifecycleKind.DELETED)) is None


def test_connection_from_another_hub_is_ignored() -> None:
    """A late connection event from a hub the device left does not change its state."""
    assert (
        transition(provisioned_row(), event(LifecycleKind.CONNECTED, hub="oldhub", seq=9)) is None
    )


def test_last_seen_never_moves_back() -> None:
    """A newer sequence number with an older eventTime updates state but not last_seen."""
    row = transition(provisioned_row(), event(LifecycleKind.CONNECTED, minute=10, seq=1))
    assert row is not None
    later = transition(row, event(LifecycleKind.DISCONNECTED, minute=5, seq=2))
    assert later is not None
    assert (later.connection_state, later.last_seen) == (
        ConnectionState.DISCONNECTED,
        T0 + timedelta(minutes=10),
    )


@given(
    st.lists(
        st.tuples(st.booleans(), sequence_numbers()),
        min_size=1,
        max_size=12,
        unique_by=lambda t: t[1],
    ),
    st.randoms(use_true_random=False),
    st.lists(st.integers(min_value=0, max_value=11), max_size=8),
)
def test_any_order_and_duplication_converges(
    pairs: list[tuple[bool, str]], rnd: Any, dupes: list[int]
) -> None:
    """Any permutation with duplicates of connect/disconnect events ends in the state of the highest sequence number."""
    ranks = {seq: rank for rank, seq in enumerate(sorted(seq for _, seq in pairs))}
    events = [  # the hub's clock and its sequence numbers move together
        replace(
            event(
                LifecycleKind.CONNECTED if connected else LifecycleKind.DISCONNECTED,
                minute=ranks[seq],
            ),
            sequence_number=seq,
        )
        for connected, seq in pairs
    ]
    delivered = events + [events[d % len(events)] for d in dupes]
    rnd.shuffle(delivered)
    row: DeviceRecord | None = provisioned_row()
    for item in delivered:
        row = transition(row, item) or row
    newest = max(events, key=lambda e: e.sequence_number or "")
    assert row is not None
    assert row.last_sequence_number == newest.sequence_number
    expected = (
        ConnectionState.CONNECTED
        if newest.kind is LifecycleKind.CONNECTED
        else ConnectionState.DISCONNECTED
    )
    assert row.connection_state is expected
    assert row.last_seen == newest.event_time
