"""A hard wall-clock bound around a blocking store call.

The Table backend already bounds each HTTP attempt (`connection_timeout`, `read_timeout`, no
retries), but a call can make several requests (create the table on first use, read then write with
an etag). `call_with_deadline(fn, seconds)` runs `fn` on a daemon thread and raises `StoreTimeout`
if it has not returned in time, so the webhook always answers before DPS gives up. The abandoned
call finishes (or fails) in the background on its own SDK timeouts; a daemon thread never blocks
process exit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from store.base import StoreTimeout

T = TypeVar("T")


def call_with_deadline(fn: Callable[[], T], seconds: float, *, what: str = "store call") -> T:
    """Return `fn()`, re-raise its exception, or raise `StoreTimeout` after `seconds`."""
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
        raise StoreTimeout(f"{what}: no answer within {seconds:g} s")
    if failure:
        raise failure[0]
    return outcome[0]
