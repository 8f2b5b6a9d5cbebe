"""A hard wall-clock bound around blocking store calls, one per invocation.

The Table backend already bounds each HTTP attempt (`connection_timeout`, `read_timeout`, no
retries), but a call can make several requests (create the table on first use, read then write with
an etag), and an invocation makes several calls. A `Deadline` is made once per invocation
(`Deadline.after(STORE_TIMEOUT_SECONDS)`) and every store call of that invocation runs within what
is left of it: `call_with_deadline(fn, deadline)` runs `fn` on a daemon thread and raises
`StoreTimeout` if it has not returned by then (at once, without a thread, when nothing is left).
So the webhook's retired check and its record write together take at most STORE_TIMEOUT_SECONDS,
not that much each, and the webhook always answers before DPS gives up. The abandoned call
finishes (or fails) in the background on its own SDK timeouts; a daemon thread never blocks
process exit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from store.base import StoreTimeout

T = TypeVar("T")


@dataclass(frozen=True)
class Deadline:
    """A moment on a monotonic clock; `remaining()` seconds are left until it."""

    at: float
    seconds: float
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def after(cls, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> Deadline:
        """The deadline `seconds` from now."""
        return cls(at=clock() + seconds, seconds=seconds, clock=clock)

    def remaining(self) -> float:
        """Seconds left, never below 0."""
        return max(0.0, self.at - self.clock())


def call_with_deadline(
    fn: Callable[[], T], deadline: Deadline | float, *, what: str = "store call"
) -> T:
    """Return `fn()`, re-raise its exception, or raise `StoreTimeout` once `deadline` (a `Deadline`,
    or seconds from now) has passed."""
    if not isinstance(deadline, Deadline):
        deadline = Deadline.after(deadline)
    seconds = deadline.remaining()
    if seconds <= 0:
        raise StoreTimeout(
            f"{what}: no time left of the {deadline.seconds:g} s this invocation may spend on storage"
        )
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run, name=f"deadline:{what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise StoreTimeout(
            f"{what}: no answer within the {deadline.seconds:g} s this invocation may spend on storage"
        )
    if failure:
        raise failure[0]
    return outcome[0]
