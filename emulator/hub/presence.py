"""When a hub tells Event Grid that a device connected or disconnected. Pure: `now` is an argument.

IoT Hub does not report every connect and disconnect: it "publishes the current connection state
taken at a periodic 60 second snapshot", and a device counts as connected only once, after opening
its connection, it subscribes to cloud-to-device messages or sends telemetry
(docs/protocol/lifecycle-events.md §4, hub-mqtt.md §12). The hub endpoint decides when a device's
reported state changes (`observe`); this module decides when that change goes out:

- `snapshot` (the default, as IoT Hub): changes are collected per window of `interval` seconds,
  aligned to multiples of the interval since the epoch; when a window closes (`due`), each device
  that changed in it is reported once, with its state at that moment (a device that connected and
  disconnected within one window gets one Disconnected, as IoT Hub sends);
- `immediate` (for tests and demos that cannot wait a minute): every change is reported at once.

What it must not do: read a clock, hold events of its own (the hub builds them), deliver anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "DEFAULT_SNAPSHOT_INTERVAL",
    "ConnectionEvents",
    "PresencePolicy",
    "PresenceReporter",
]

DEFAULT_SNAPSHOT_INTERVAL = 60.0  # IoT Hub's snapshot period (lifecycle-events.md §4)


class ConnectionEvents(StrEnum):
    """How connection state changes become DeviceConnected / DeviceDisconnected events."""

    SNAPSHOT = "snapshot"
    IMMEDIATE = "immediate"


@dataclass(frozen=True, kw_only=True)
class PresencePolicy:
    """`[events] connection_events` and `snapshot_interval` as one value."""

    mode: ConnectionEvents = ConnectionEvents.SNAPSHOT
    interval: float = DEFAULT_SNAPSHOT_INTERVAL

    def __post_init__(self) -> None:
        if not (math.isfinite(self.interval) and self.interval > 0):
            raise ValueError("snapshot interval: expected a positive number of seconds")


class PresenceReporter:
    """One hub's pending connection-state changes; says which to report, and when."""

    def __init__(self, policy: PresencePolicy) -> None:
        self.policy = policy
        self._pending: dict[str, bool] = {}  # device id -> its state at the latest change
        self._window_end: float | None = None

    def observe(self, device_id: str, connected: bool, now: float) -> list[tuple[str, bool]]:
        """A device's reported state changed at `now`; what to report right away."""
        if self.policy.mode is ConnectionEvents.IMMEDIATE:
            return [(device_id, connected)]
        if self._window_end is None:
            interval = self.policy.interval
            self._window_end = (math.floor(now / interval) + 1) * interval
        self._pending[device_id] = connected
        return []

    def next_due(self) -> float | None:
        """When the open window closes (None when nothing waits)."""
        return self._window_end

    def due(self, now: float) -> list[tuple[str, bool]]:
        """The snapshot to report at `now`: each device that changed in a window closed by now,
        with its latest state, in the order they first changed."""
        if self._window_end is None or now < self._window_end:
            return []
        report = list(self._pending.items())
        self._pending.clear()
        self._window_end = None
        return report
