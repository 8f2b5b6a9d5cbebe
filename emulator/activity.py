"""What happens in the local cloud, for whoever watches: the console's live views, traces, tests.

`Activity` is an in-process broadcast of small records (`ActivityEvent`: a kind, a time and
JSON-able fields). Components publish what they do; listeners are plain callables run on the
emulator's event loop, in the order they listened. Publishing never blocks and never fails: a
listener that raises is logged and kept. Listeners must be quick (a console appends to a bounded
buffer and lets its own task do the rest), so a slow browser never slows a device down.

Kinds published so far (fields in parentheses):

    dps.reply     a DPS answer as it goes on the wire (client_id, topic, body: the JSON sent)
    dps.webhook   one custom-allocation webhook call (registration_id, attempt, status, latency_ms,
                  request: the AllocationRequest sent, its webhook URL masked as DPS masks it,
                  answer: the start of the webhook's answer, error: why there was no answer)

Nothing published carries a key: DPS answers have none, and webhook URLs are never included.
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
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every event from now on; returns what stops it."""
        self._listeners.append(listener)

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return stop

    def publish(self, kind: str, time: float, **fields: Any) -> None:
        """Hand one event to every listener."""
        if not self._listeners:
            return
        event = ActivityEvent(kind, time, fields)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("activity listener failed on %s", kind)
