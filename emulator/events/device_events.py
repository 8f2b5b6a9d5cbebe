"""Device lifecycle events as values, and their Event Grid form. Pure: no I/O, no clock, no ids drawn.

The hub produces a `LifecycleEvent` when a device identity is created or deleted and when a device
connects or disconnects; `events.EventDelivery` posts them. The Event Grid shape is IoT Hub's
(docs/protocol/lifecycle-events.md §2-§3, fixtures in tests/fixtures/eventgrid/):

- envelope `id, topic, subject = devices/{deviceId}, eventType, eventTime, data, dataVersion "1",
  metadataVersion "1"`; the body is a JSON array;
- Created/Deleted `data = {"twin": {...}, "hubName", "deviceId"}`;
- Connected/Disconnected `data = {"deviceConnectionStateEventInfo": {"sequenceNumber"}, "hubName",
  "deviceId"}`.

Sequence numbers are 64 upper-case hex digits, strictly increasing per device under plain string
comparison (as the real ones are compared): `next_sequence(previous, now)` takes the larger of
`previous + 1` and the time in 100 ns ticks, so they keep increasing across restarts too.
`hubName` is the hub's resource name: the first label of its host name (the whole name for an IP).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "LifecycleEvent",
    "LifecycleKind",
    "event_grid_event",
    "event_time",
    "format_sequence",
    "hub_resource_name",
    "next_sequence",
]

TICKS_PER_SECOND = 10_000_000
_TOPIC = "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/emulator/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/{hub}"


class LifecycleKind(StrEnum):
    """The four device lifecycle event types, by their Event Grid `eventType`."""

    CREATED = "Microsoft.Devices.DeviceCreated"
    DELETED = "Microsoft.Devices.DeviceDeleted"
    CONNECTED = "Microsoft.Devices.DeviceConnected"
    DISCONNECTED = "Microsoft.Devices.DeviceDisconnected"

    @property
    def is_connection(self) -> bool:
        """Connected / Disconnected carry a sequence number; Created / Deleted a twin."""
        return self in (LifecycleKind.CONNECTED, LifecycleKind.DISCONNECTED)


@dataclass(frozen=True, kw_only=True)
class LifecycleEvent:
    """One event as the hub produced it."""

    kind: LifecycleKind
    hub: str
    device_id: str
    time: float
    sequence_number: str | None = None  # connection events
    twin: Mapping[str, Any] | None = field(default=None, repr=False)  # identity events


def next_sequence(previous: int, now: float) -> int:
    """The next per-device sequence value after `previous` (see the module docstring)."""
    return max(previous + 1, int(now * TICKS_PER_SECOND))


def format_sequence(value: int) -> str:
    """A sequence value as the 64 hex digits Event Grid carries."""
    return f"{value:064X}"


def hub_resource_name(host: str) -> str:
    """`toasters.azure-devices.net` -> `toasters`; an IP address stays whole."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host.split(".", 1)[0]
    return host


def event_time(now: float) -> str:
    """ISO 8601 UTC with 7 fractional digits, as in IoT Hub's samples."""
    moment = datetime.fromtimestamp(now, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond * 10:07d}Z"


def event_grid_event(event: LifecycleEvent, *, event_id: str) -> dict[str, Any]:
    """The Event Grid schema form of one event (one element of the posted array)."""
    name = hub_resource_name(event.hub)
    data: dict[str, Any]
    if event.kind.is_connection:
        data = {
            "deviceConnectionStateEventInfo": {"sequenceNumber": event.sequence_number},
            "hubName": name,
            "deviceId": event.device_id,
        }
    else:
        data = {"twin": dict(event.twin or {}), "hubName": name, "deviceId": event.device_id}
    return {
        "id": event_id,
        "topic": _TOPIC.format(hub=name.upper()),
        "subject": f"devices/{event.device_id}",
        "eventType": event.kind.value,
        "eventTime": event_time(event.time),
        "data": data,
        "dataVersion": "1",
        "metadataVersion": "1",
    }
