"""IoT Hub device lifecycle events → inventory transitions. Pure: no I/O, no clock, no Azure SDK.

Input: one Event Grid event from an IoT hub (`docs/protocol/lifecycle-events.md`): `parse_event`
validates it into a `LifecycleEvent` (errors name the field). Output: `transition(current, event)` →
the new inventory row, or None when the event changes nothing. The store applies it with optimistic
concurrency.

Event Grid delivers at least once and in any order, so every rule is idempotent and order-aware:

| event | no row yet | row exists |
|---|---|---|
| DeviceCreated | new row on that hub, identity present | older than `last_identity_event` → ignored; else identity present, hub set to the event's hub unless the row's hub already is that hub |
| DeviceDeleted | ignored (nothing to mark) | older than `last_identity_event` → ignored; from another hub than the row's (DPS deletes the old identity after a re-provision) → ignored; else identity deleted, disconnected |
| DeviceConnected / DeviceDisconnected | new row with that state | `sequenceNumber` ≤ `last_sequence_number` (plain string comparison, as the spec says) → ignored; from another hub than the row's → ignored; else state, `last_sequence_number`, `last_seen` (never moves back) |
| module event (non-empty `moduleId`) | ignored | ignored |

Any transition whose result equals the current row is reported as "no change": a redelivered event
writes nothing.

Lifecycle events carry the hub's *device id*; the inventory is keyed by *registration id*. DPS
creates the hub identity with device id = registration id unless an individual enrollment sets
another `deviceId`, so events are applied to the row whose canonical registration id equals the
event's device id, canonicalised the same way (`sas.registration_id.canonical_registration_id`:
DPS matches ids case-insensitively). Devices whose ids differ are not tracked by lifecycle events
(documented limitation).

Errors:

    LifecycleError (ValueError)
    ├── UnknownEventType   an event type this handler does not process (logged and ignored by the shell)
    └── InvalidEvent       a processed type with a missing or malformed field
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum

from sas.registration_id import canonical_registration_id
from store.records import ConnectionState, DeviceRecord, HubIdentity

EVENT_PREFIX = "Microsoft.Devices."


class LifecycleError(ValueError):
    """A lifecycle event that cannot be applied."""


class UnknownEventType(LifecycleError):
    """Not one of the four device lifecycle event types."""

    def __init__(self, event_type: object) -> None:
        super().__init__(f"eventType: not a device lifecycle event: {event_type!r}")
        self.event_type = event_type


class InvalidEvent(LifecycleError):
    """A field is missing or malformed; the message names it."""


class LifecycleKind(StrEnum):
    """The four event types handled, by their Event Grid `eventType`."""

    CREATED = "Microsoft.Devices.DeviceCreated"
    DELETED = "Microsoft.Devices.DeviceDeleted"
    CONNECTED = "Microsoft.Devices.DeviceConnected"
    DISCONNECTED = "Microsoft.Devices.DeviceDisconnected"


@dataclass(frozen=True, kw_only=True)
class LifecycleEvent:
    """One parsed device event."""

    event_id: str
    kind: LifecycleKind
    hub_name: str
    device_id: str
    event_time: datetime
    module_id: str | None = None
    sequence_number: str | None = None  # connection events only

    @property
    def is_connection(self) -> bool:
        """True for DeviceConnected / DeviceDisconnected."""
        return self.kind in (LifecycleKind.CONNECTED, LifecycleKind.DISCONNECTED)


def parse_event(
    *, event_id: object, event_type: object, event_time: object, data: object
) -> LifecycleEvent:
    """Validate an Event Grid envelope's parts into a `LifecycleEvent`."""
    try:
        kind = LifecycleKind(str(event_type))
    except ValueError:
        raise UnknownEventType(event_type) from None
    if not isinstance(event_id, str) or not event_id:
        raise InvalidEvent("id: expected a non-empty string")
    when = _parse_time(event_time)
    if not isinstance(data, Mapping):
        raise InvalidEvent(f"data: expected an object, got {type(data).__name__}")
    hub_name = _text(data, "hubName")
    device_id = _text(data, "deviceId")
    module_id = data.get("moduleId")
    if module_id is not None and not isinstance(module_id, str):
        raise InvalidEvent("data.moduleId: expected a string")
    sequence = None
    if kind in (LifecycleKind.CONNECTED, LifecycleKind.DISCONNECTED):
        info = data.get("deviceConnectionStateEventInfo")
        if not isinstance(info, Mapping):
            raise InvalidEvent("data.deviceConnectionStateEventInfo: expected an object")
        sequence = info.get("sequenceNumber")
        if not isinstance(sequence, str) or not sequence:
            raise InvalidEvent(
                "data.deviceConnectionStateEventInfo.sequenceNumber: expected a non-empty string"
            )
    return LifecycleEvent(
        event_id=event_id,
        kind=kind,
        hub_name=hub_name,
        device_id=device_id,
        event_time=when,
        module_id=module_id or None,
        sequence_number=sequence,
    )


def hub_matches(hub: str | None, hub_name: str) -> bool:
    """True if an inventory hub (a host name) is the hub an event names (its short name, or the same host)."""
    if hub is None:
        return False
    host = hub.lower()
    name = hub_name.lower()
    return host == name or host.split(".", 1)[0] == name


def transition(current: DeviceRecord | None, event: LifecycleEvent) -> DeviceRecord | None:
    """The inventory row after `event`, or None when the event changes nothing (see the table above)."""
    if event.module_id:
        return None
    if event.is_connection:
        new = _connection(current, event)
    elif event.kind is LifecycleKind.CREATED:
        new = _created(current, event)
    else:
        new = _deleted(current, event)
    return None if new is None or new == current else new


def _created(current: DeviceRecord | None, event: LifecycleEvent) -> DeviceRecord | None:
    if current is None:
        return DeviceRecord(
            registration_id=canonical_registration_id(event.device_id),
            device_id=event.device_id,
            hub=event.hub_name,
            hub_identity=HubIdentity.PRESENT,
            last_identity_event=event.event_time,
        )
    if _older(event.event_time, current.last_identity_event):
        return None
    hub = current.hub if hub_matches(current.hub, event.hub_name) else event.hub_name
    return replace(
        current, hub=hub, hub_identity=HubIdentity.PRESENT, last_identity_event=event.event_time
    )


def _deleted(current: DeviceRecord | None, event: LifecycleEvent) -> DeviceRecord | None:
    if current is None or _older(event.event_time, current.last_identity_event):
        return None
    if current.hub is not None and not hub_matches(current.hub, event.hub_name):
        return None
    return replace(
        current,
        hub_identity=HubIdentity.DELETED,
        connection_state=ConnectionState.DISCONNECTED,
        last_identity_event=event.event_time,
    )


def _connection(current: DeviceRecord | None, event: LifecycleEvent) -> DeviceRecord | None:
    assert event.sequence_number is not None  # noqa: S101 -- parse_event guarantees it for connection events
    state = (
        ConnectionState.CONNECTED
        if event.kind is LifecycleKind.CONNECTED
        else ConnectionState.DISCONNECTED
    )
    if current is None:
        return DeviceRecord(
            registration_id=canonical_registration_id(event.device_id),
            device_id=event.device_id,
            hub=event.hub_name,
            connection_state=state,
            last_seen=event.event_time,
            last_sequence_number=event.sequence_number,
        )
    last = current.last_sequence_number
    if last is not None and event.sequence_number <= last:
        return None
    if current.hub is not None and not hub_matches(current.hub, event.hub_name):
        return None
    seen = current.last_seen
    return replace(
        current,
        connection_state=state,
        last_sequence_number=event.sequence_number,
        last_seen=event.event_time if seen is None or event.event_time > seen else seen,
    )


def _older(when: datetime, than: datetime | None) -> bool:
    return than is not None and when < than


def _text(data: Mapping[str, object], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"data.{name}: expected a non-empty string")
    return value


def _parse_time(value: object) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEvent(f"eventTime: expected an ISO-8601 time, got {value!r}") from None
    else:
        raise InvalidEvent("eventTime: expected an ISO-8601 time")
    if parsed.utcoffset() is None:
        parsed = parsed.replace(
            tzinfo=UTC
        )  # Event Grid times are UTC; the Functions binding may drop the zone
    return parsed.astimezone(UTC)
