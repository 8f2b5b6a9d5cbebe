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

A store that bounds its own blocking steps by the deadline (`Store.bounds_own_calls`: the Table
store on its own HTTP path, `store.rest`) is called with ``inline=True`` instead: `fn` runs on the
caller's thread with the deadline made `active()` for its duration, and each request it sends
takes its connect and read timeouts from what is left (no request is sent once nothing is), so a
hung server fails the call within the bound without a thread. A thread costs about 0.07 ms to
start and join, and about 0.17 ms more when the call waits on a socket (two thread switches per
wait), which is a third of what the store may cost per webhook call. The Table store still runs
its rare SDK calls inside an inline call (creating the table on first use, the legacy lookups) on
a thread through `call_with_deadline`, since the SDK's timeouts are fixed when its client is built.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
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


_ACTIVE: ContextVar[Deadline | None] = ContextVar("store_deadline", default=None)


def active() -> Deadline | None:
    """The deadline of the inline `call_with_deadline` running on this thread, if any."""
    return _ACTIVE.get()


def call_with_deadline(
    fn: Callable[[], T],
    deadline: Deadline | float,
    *,
    what: str = "store call",
    inline: bool = False,
) -> T:
    """Return `fn()`, re-raise its exception, or raise `StoreTimeout` once `deadline` (a `Deadline`,
    or seconds from now) has passed. With `inline`, `fn` runs on this thread with the deadline
    `active()`, and must bound every blocking step by it itself."""
    if not isinstance(deadline, Deadline):
        deadline = Deadline.after(deadline)
    seconds = deadline.remaining()
    if seconds <= 0:
        raise StoreTimeout(
            f"{what}: no time left of the {deadline.seconds:g} s this invocation may spend on storage"
        )
    if inline:
        token = _ACTIVE.set(deadline)
        try:
            return fn()
        finally:
            _ACTIVE.reset(token)
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
