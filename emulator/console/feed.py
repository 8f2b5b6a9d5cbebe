"""What the console's live views are told: recent activity in a bounded ring, read by cursor.

`Feed` listens to the emulator's `Activity`. Every listener call does one thing: append the event
to a ring of `capacity` entries (the oldest falls off) and ask the event loop, once per turn, to
wake the streams. Nothing is converted, encoded or written on the device's path: each stream
(`Feed.follow`) reads the ring from its own cursor in its own task, so a slow or closed browser
only falls behind, and is told how many events it missed (`Gap`) instead of slowing anyone.

DPS kinds (`dps.`) are listened to from start, so the provisioning view has recent webhook
exchanges when it opens (the last `exchanges` of them are kept apart as well, for its history).
Hub kinds (`hub.`, with every telemetry message) are listened to only while at least one stream
is open: with no browser open the hubs publish nothing (`Activity.wanted`).

Must not: block, raise into the publisher, or hold more than its two bounded deques.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from emulator.activity import Activity, ActivityEvent

__all__ = ["Feed", "Gap"]

DEFAULT_CAPACITY = 4096
DEFAULT_EXCHANGES = 500
COALESCE_SECONDS = 0.05  # a stream waits this long after a wake-up to send events in one write


@dataclass(frozen=True)
class Gap:
    """A stream fell behind the ring: `missed` events are gone."""

    missed: int


class Feed:
    """A bounded ring of recent activity, read by any number of streams."""

    def __init__(
        self,
        activity: Activity,
        *,
        capacity: int = DEFAULT_CAPACITY,
        exchanges: int = DEFAULT_EXCHANGES,
    ) -> None:
        self._activity = activity
        self._ring: deque[tuple[int, ActivityEvent]] = deque(maxlen=capacity)
        self._exchanges: deque[ActivityEvent] = deque(maxlen=exchanges)
        self._last = 0  # sequence number of the newest event
        self._changed = asyncio.Event()
        self._waking = False
        self._streams = 0
        self._stop_hub: Callable[[], None] | None = None
        self._stop_dps = activity.listen(self._on_event, kinds=("dps.",))

    @property
    def streams(self) -> int:
        """How many streams are open."""
        return self._streams

    def exchanges(self) -> list[ActivityEvent]:
        """The last webhook exchanges (`dps.webhook`), oldest first."""
        return list(self._exchanges)

    def close(self) -> None:
        """Stop listening."""
        self._stop_dps()
        if self._stop_hub is not None:
            self._stop_hub()
            self._stop_hub = None

    def _on_event(self, event: ActivityEvent) -> None:
        self._last += 1
        self._ring.append((self._last, event))
        if event.kind == "dps.webhook":
            self._exchanges.append(event)
        if not self._waking:
            self._waking = True
            with contextlib.suppress(RuntimeError):  # no running loop: nobody to wake
                asyncio.get_running_loop().call_soon(self._wake)

    def _wake(self) -> None:
        self._waking = False
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    @contextlib.asynccontextmanager
    async def _open(self) -> AsyncIterator[None]:
        self._streams += 1
        if self._stop_hub is None:
            self._stop_hub = self._activity.listen(self._on_event, kinds=("hub.",))
        try:
            yield
        finally:
            self._streams -= 1
            if self._streams == 0 and self._stop_hub is not None:
                self._stop_hub()
                self._stop_hub = None

    async def follow(
        self, *, heartbeat: float = 15.0
    ) -> AsyncIterator[list[ActivityEvent | Gap] | None]:
        """Batches of what happens from now on, in order; None after `heartbeat` seconds of
        nothing (so the caller can keep an idle connection alive). Runs until cancelled."""
        async with self._open():
            cursor = self._last
            while True:
                if self._last == cursor:
                    changed = self._changed
                    try:
                        await asyncio.wait_for(changed.wait(), heartbeat)
                    except TimeoutError:
                        yield None
                        continue
                    await asyncio.sleep(COALESCE_SECONDS)
                batch: list[ActivityEvent | Gap] = []
                oldest = self._ring[0][0] if self._ring else self._last + 1
                if cursor + 1 < oldest:
                    batch.append(Gap(oldest - cursor - 1))
                    cursor = oldest - 1
                start = len(self._ring) - (self._last - cursor)
                for index in range(max(0, start), len(self._ring)):
                    batch.append(self._ring[index][1])
                cursor = self._last
                if batch:
                    yield batch
