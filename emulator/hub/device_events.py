"""Device lifecycle events as the hub produces them: values, and their sequence numbers. Pure.

A device identity created or deleted (`hub.registry`) and a device connecting or disconnecting
(`hub.endpoint`) become a `LifecycleEvent`, handed to the hub's `on_event` (never blocking). The
`emulator.events` package turns them into Event Grid events and delivers them.

Sequence numbers are 64 upper-case hex digits, strictly increasing per device under plain string
comparison (as the real ones are compared): `next_sequence(previous, now)` takes the larger of
`previous + 1` and the time in 100 ns ticks, so they keep increasing across restarts too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from emulator.hub.views import DeviceView

__all__ = [
    "TICKS_PER_SECOND",
    "LifecycleEvent",
    "LifecycleKind",
    "format_sequence",
    "next_sequence",
]

TICKS_PER_SECOND = 10_000_000


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
    device: DeviceView | None = field(default=None, repr=False)  # identity events: the device then


def next_sequence(previous: int, now: float) -> int:
    """The next per-device sequence value after `previous` (see the module docstring)."""
    return max(previous + 1, int(now * TICKS_PER_SECOND))


def format_sequence(value: int) -> str:
    """A sequence value as the 64 hex digits Event Grid carries."""
    return f"{value:064X}"
