"""Lifecycle event delivery: hub events -> Event Grid POSTs, at least once, never blocking the hub.

The hub hands `lifecycle.LifecycleEvent` values to `EventDelivery.enqueue` on the emulator's
event loop; enqueue only appends to a bounded queue and returns. One worker task takes events in
order, gives each an Event Grid `id` once (kept across retries, so a redelivery is recognisable),
and POSTs it as a one-element JSON array, as Event Grid does by default, with
`aeg-event-type: Notification` (docs/protocol/lifecycle-events.md §2, §5, §7).

Delivery rules:
- success is any 2xx status (the Functions host answers 202);
- 400 and 413 cannot succeed later: the event is dropped with a warning (Event Grid dead-letters);
- anything else (no answer, 404, 5xx...) is retried after `retry_delays` (the last one repeats)
  up to `max_attempts`, then dropped with a warning. Events wait behind the one being retried,
  which keeps each device's events in order;
- the queue holds at most `max_queued` events; when full the oldest is dropped and counted.
The URL may carry a key (`?code=`): logs show it without its query string.

The POST goes through the `EventPoster` seam: `HttpEventPoster` (standard library `http.client`
in a worker thread) or `FunctionEventPoster`, a function-backed fake for tests.

Errors:

    EventPostError     no HTTP answer (refused, reset, timed out); retried like a 5xx
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from devtools.urls import mask_url as masked
from emulator.events.eventgrid import event_grid_event
from emulator.hub.device_events import LifecycleEvent
from emulator.web.client import HttpClient, PostFailed

__all__ = [
    "DEFAULT_RETRY_DELAYS",
    "EventDelivery",
    "EventPostError",
    "EventPoster",
    "FunctionEventPoster",
    "HttpEventPoster",
    "functions_host_events_url",
]

log = logging.getLogger(__name__)

DEFAULT_RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
DEFAULT_MAX_ATTEMPTS = 30  # Event Grid's default
DEFAULT_MAX_QUEUED = 10_000
POST_TIMEOUT = 30.0  # Event Grid waits 30 s for an answer
_NOT_RETRIED = frozenset({400, 413})


def functions_host_events_url(
    base_url: str, system_key: str, function_name: str = "device_lifecycle"
) -> str:
    """The local Functions host's Event Grid trigger URL for `function_name`, with the host's
    Event Grid system key (`code=`), as Azure's subscription endpoints carry it."""
    return (
        f"{base_url.rstrip('/')}/runtime/webhooks/EventGrid?functionName={function_name}"
        f"&code={system_key}"
    )


class EventPostError(Exception):
    """No HTTP answer came back; the message names the masked URL and the cause kind."""


class EventPoster(Protocol):
    """Something that POSTs a JSON body with headers and returns the HTTP status."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST; return the status, or raise EventPostError when no answer came."""
        ...


class HttpEventPoster:
    """`EventPoster` over HTTP (`web.client.HttpClient`)."""

    def __init__(
        self, *, timeout: float = POST_TIMEOUT, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._client = HttpClient(
            timeout=timeout, max_response_bytes=64 * 1024, ssl_context=ssl_context
        )

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST `body` to `url` and return the status."""
        try:
            status, _ = await self._client.post(url, body, headers)
        except PostFailed as error:
            raise EventPostError(str(error)) from None
        return status

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._client.aclose()


Handler = Callable[[str, Any, Mapping[str, str]], "int | Awaitable[int]"]


class FunctionEventPoster:
    """An `EventPoster` backed by a function `(url, parsed body, headers) -> status` (may be async).

    The function may raise EventPostError to act as an unreachable endpoint. Every call is kept
    in `calls` as `(url, parsed body, headers)`.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.calls: list[tuple[str, Any, Mapping[str, str]]] = []

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """Call the function with the parsed body."""
        parsed = json.loads(body)
        self.calls.append((url, parsed, dict(headers)))
        answer = self._handler(url, parsed, headers)
        return answer if isinstance(answer, int) else await answer


@dataclass(frozen=True)
class _Pending:
    event_id: str
    body: bytes


class EventDelivery:
    """A bounded queue of lifecycle events and the one task that posts them."""

    def __init__(
        self,
        url: str,
        poster: EventPoster,
        *,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_queued: int = DEFAULT_MAX_QUEUED,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        if not retry_delays or max_attempts < 1 or max_queued < 1:
            raise ValueError("retry_delays, max_attempts, max_queued: expected non-empty / >= 1")
        self._url = url
        self._poster = poster
        self._delays = tuple(retry_delays)
        self._max_attempts = max_attempts
        self._max_queued = max_queued
        self._new_id = new_id
        self._queue: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Events queued and not yet delivered (including one being retried)."""
        return len(self._queue)

    def enqueue(self, event: LifecycleEvent) -> None:
        """Queue one event (never blocks; drops the oldest when the queue is full)."""
        event_id = self._new_id()
        body = json.dumps([event_grid_event(event, event_id=event_id)]).encode("utf-8")
        if len(self._queue) >= self._max_queued:
            oldest = self._queue.popleft()
            self.dropped += 1
            log.warning("event queue full; dropped event id=%s", oldest.event_id)
        self._queue.append(_Pending(event_id, body))
        self._wake.set()

    async def start(self) -> None:
        """Start the worker task on the running loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="lifecycle-events")
            log.info("lifecycle events to %s", masked(self._url))

    async def close(self) -> None:
        """Stop the worker; events still queued are dropped (logged with their count)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._queue:
            log.info("lifecycle events not delivered at shutdown count=%d", len(self._queue))
        closing = getattr(self._poster, "aclose", None)
        if closing is not None:
            await closing()

    async def drain(self, timeout: float) -> bool:
        """Wait until the queue is empty (tests, shutdown); False if it is not within `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                while self._queue:
                    await asyncio.sleep(0.01)
        except TimeoutError:
            return False
        return True

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            pending = self._queue[0]
            await self._deliver(pending)
            if self._queue and self._queue[0] is pending:
                self._queue.popleft()

    async def _deliver(self, pending: _Pending) -> None:
        for attempt in range(1, self._max_attempts + 1):
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "aeg-event-type": "Notification",
                "aeg-subscription-name": "EMULATOR",
                "aeg-delivery-count": str(attempt - 1),
                "aeg-metadata-version": "1",
                "aeg-data-version": "1",
            }
            try:
                status = await self._poster.post(self._url, pending.body, headers)
            except EventPostError as error:
                status, reason = None, str(error)
            else:
                reason = f"status {status}"
            if status is not None and 200 <= status < 300:
                self.delivered += 1
                return
            if status in _NOT_RETRIED:
                break
            if attempt < self._max_attempts:
                delay = self._delays[min(attempt - 1, len(self._delays) - 1)]
                log.info(
                    "lifecycle event id=%s attempt=%d failed (%s); retry in %.1fs",
                    pending.event_id,
                    attempt,
                    reason,
                    delay,
                )
                await asyncio.sleep(delay)
        self.dropped += 1
        log.warning("lifecycle event id=%s dropped after %s", pending.event_id, reason)
