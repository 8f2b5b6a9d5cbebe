"""What happens in the local cloud, for whoever watches: the console's live views, traces, tests.

`Activity` is an in-process broadcast of small records (`ActivityEvent`: a kind, a time and
JSON-able fields). Components publish what they do; listeners are plain callables run on the
emulator's event loop, in the order they listened. Publishing never blocks and never fails: a
listener that raises is logged and kept. Listeners must be quick (a console appends to a bounded
buffer and lets its own task do the rest), so a slow browser never slows a device down.

A listener may ask for some kinds only (`listen(..., kinds=("hub.",))`, by prefix); publishers
of frequent events ask `wanted(kind)` first, so that with nobody listening for them (no console
open) they cost one check and nothing is built.

Kinds published so far (fields in parentheses):

    dps.reply       a DPS answer as it goes on the wire (client_id, topic, body: the JSON sent)
    dps.webhook     one custom-allocation webhook call (registration_id, attempt, status,
                    latency_ms, request: the AllocationRequest sent, its webhook URL masked as DPS
                    masks it, answer: the start of the webhook's answer, error: why there was no
                    answer)
    hub.telemetry   a device-to-cloud message (hub, device_id, seq: its number in the hub's log,
                    body: bytes, properties, system_properties)
    hub.changed     a device's identity or twin changed (hub, device_id)
    hub.lifecycle   a device created, deleted, connected or disconnected (hub, device_id, event:
                    IoT Hub's event type)

Nothing published carries a key: DPS answers have none, webhook URLs are never included, and a
device appears by id only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Activity", "ActivityEvent", "Listener"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActivityEvent:
    """One thing that happened."""

    kind: str
    time: float
    fields: Mapping[str, Any] = field(default_factory=dict)


Listener = Callable[[ActivityEvent], None]


class Activity:
    """Listeners and the events published to them."""

    def __init__(self) -> None:
        self._listeners: list[tuple[Listener, tuple[str, ...]]] = []

    def listen(self, listener: Listener, *, kinds: tuple[str, ...] = ("",)) -> Callable[[], None]:
        """Call `listener` with every event from now on whose kind starts with one of `kinds`
        (default: all); returns what stops it."""
        entry = (listener, kinds)
        self._listeners.append(entry)

        def stop() -> None:
            if entry in self._listeners:
                self._listeners.remove(entry)

        return stop

    def wanted(self, kind: str) -> bool:
        """Whether any listener takes `kind` (a publisher skips building an unwanted event)."""
        return any(kind.startswith(kinds) for _, kinds in self._listeners)

    def publish(self, kind: str, time: float, **fields: Any) -> None:
        """Hand one event to every listener that takes its kind."""
        if not self._listeners:
            return
        event = ActivityEvent(kind, time, fields)
        for listener, kinds in list(self._listeners):
            if not kind.startswith(kinds):
                continue
            try:
                listener(event)
            except Exception:
                log.exception("activity listener failed on %s", kind)
