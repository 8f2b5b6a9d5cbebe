"""Lifecycle event delivery: hub events -> Event Grid POSTs, at least once, never blocking the hub.

The hub hands `lifecycle.LifecycleEvent` values to `EventDelivery.enqueue` on the emulator's event
loop; enqueue only queues and returns. One worker task gives each event an Event Grid `id` once
(kept across retries, so a redelivery is recognisable) and POSTs it as a one-element JSON array, as
Event Grid does by default, with `aeg-event-type: Notification` (docs/protocol/lifecycle-events.md
§2, §5, §7).

Before any event, `start` makes Event Grid's subscription validation handshake with the URL, once
per hub (each hub is its own Event Grid topic): the endpoint must echo the `validationCode`
(`policy.validation_problem`). An endpoint that does not is `SubscriptionValidationFailed`, and the
emulator does not start: on Azure such a subscription cannot be created, so no event would ever
arrive.

What each answer leads to is `policy`'s (Event Grid's rules): delivered on 200-204; dropped with a
warning on 400, 401, 403, 413; otherwise retried on Event Grid's schedule (10 s, 30 s, 1 min, ...
with a little randomness) within 30 attempts and a 24 h time to live, all times multiplied by
`scale`. A failed event waits in a retry queue while later events go ahead, so events arrive out
of order when one fails, as Event Grid's do. At most `max_queued` events wait; when full, the
oldest is dropped and counted. The URL may carry a key (`?code=`): logs show it without its query.

The POST goes through the `EventPoster` seam: `HttpEventPoster` (`web.client`) or
`FunctionEventPoster`, a function-backed fake for tests.

Errors:

    EventPostError                  no HTTP answer (refused, reset, timed out); retried like a 5xx
    SubscriptionValidationFailed    the URL did not pass the validation handshake (names why)
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import logging
import random
import ssl
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from devtools.urls import mask_url as masked
from emulator.events.eventgrid import event_grid_event, event_time, hub_topic
from emulator.events.policy import (
    DEFAULT_MAX_ATTEMPTS,
    EVENT_TTL_SECONDS,
    HANDSHAKE_ATTEMPTS,
    HANDSHAKE_RETRY_SECONDS,
    GiveUp,
    Verdict,
    judge,
    next_step,
    validation_event,
    validation_problem,
)
from emulator.hub.device_events import LifecycleEvent
from emulator.web.client import HttpClient, PostFailed

__all__ = [
    "EventAnswer",
    "EventDelivery",
    "EventPostError",
    "EventPoster",
    "FunctionEventPoster",
    "HttpEventPoster",
    "Reply",
    "SubscriptionValidationFailed",
    "functions_host_events_url",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_QUEUED = 10_000
POST_TIMEOUT = 30.0  # Event Grid waits 30 s for an answer
MAX_ANSWER_BYTES = 64 * 1024
SUBSCRIPTION_NAME = "EMULATOR"


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


class SubscriptionValidationFailed(Exception):
    """The events URL did not pass Event Grid's subscription validation handshake."""

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(
            f"lifecycle events (--events-url, [events] url): {masked(url)} failed Event Grid's "
            f"subscription validation handshake: {problem}; the endpoint must answer HTTP 200 "
            '{"validationResponse": <data.validationCode>} to an "aeg-event-type: '
            'SubscriptionValidation" POST, as the Functions Event Grid trigger does'
        )
        self.problem = problem


@dataclass(frozen=True)
class EventAnswer:
    """An endpoint's HTTP answer: its status and (bounded) body."""

    status: int
    body: bytes = b""


class EventPoster(Protocol):
    """Something that POSTs a JSON body with headers and returns the HTTP answer."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> EventAnswer:
        """POST; return the answer, or raise EventPostError when no answer came."""
        ...


class HttpEventPoster:
    """`EventPoster` over HTTP (`web.client.HttpClient`)."""

    def __init__(
        self, *, timeout: float = POST_TIMEOUT, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._client = HttpClient(
            timeout=timeout, max_response_bytes=MAX_ANSWER_BYTES, ssl_context=ssl_context
        )

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> EventAnswer:
        """POST `body` to `url` and return the answer."""
        try:
            status, answer = await self._client.post(url, body, headers)
        except PostFailed as error:
            raise EventPostError(str(error)) from None
        return EventAnswer(status, answer)

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._client.aclose()


Reply = int | EventAnswer
Handler = Callable[[str, Any, Mapping[str, str]], "Reply | Awaitable[Reply]"]


class FunctionEventPoster:
    """An `EventPoster` backed by a function `(url, parsed body, headers) -> status or
    EventAnswer` (may be async).

    The function may raise EventPostError to act as an unreachable endpoint. Every call is kept
    in `calls` as `(url, parsed body, headers)`.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.calls: list[tuple[str, Any, Mapping[str, str]]] = []

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> EventAnswer:
        """Call the function with the parsed body."""
        parsed = json.loads(body)
        self.calls.append((url, parsed, dict(headers)))
        answer = self._handler(url, parsed, headers)
        if not isinstance(answer, int | EventAnswer):
            answer = await answer
        return answer if isinstance(answer, EventAnswer) else EventAnswer(answer)


@dataclass(eq=False)
class _Pending:
    event_id: str
    body: bytes
    published: float  # the worker clock's reading at enqueue
    attempts: int = 0
    gone: bool = field(default=False)  # dropped while queued; skipped when reached


class EventDelivery:
    """The queue of lifecycle events for one URL and the one task that posts them."""

    def __init__(
        self,
        url: str,
        poster: EventPoster,
        *,
        sources: Sequence[str] = (),
        scale: float = 1.0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        ttl: float = EVENT_TTL_SECONDS,
        max_queued: int = DEFAULT_MAX_QUEUED,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if scale <= 0 or max_attempts < 1 or max_queued < 1 or ttl <= 0:
            raise ValueError("scale, ttl: expected > 0; max_attempts, max_queued: expected >= 1")
        self._url = url
        self._poster = poster
        self._sources = tuple(sources)
        self._scale = scale
        self._max_attempts = max_attempts
        self._ttl = ttl
        self._max_queued = max_queued
        self._new_id = new_id
        self._clock = clock
        self._wall_clock = wall_clock
        self._jitter = jitter
        self._all: OrderedDict[str, _Pending] = OrderedDict()  # every waiting event, oldest first
        self._ready: deque[_Pending] = deque()  # due now, in arrival order
        self._later: list[tuple[float, int, _Pending]] = []  # (due, tie-break, event): a heap
        self._ties = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Events queued and not yet delivered (those waiting for a retry included)."""
        return len(self._all)

    def enqueue(self, event: LifecycleEvent) -> None:
        """Queue one event (never blocks; drops the oldest when the queue is full)."""
        event_id = self._new_id()
        body = json.dumps([event_grid_event(event, event_id=event_id)]).encode("utf-8")
        if len(self._all) >= self._max_queued:
            _, oldest = self._all.popitem(last=False)
            oldest.gone = True
            self.dropped += 1
            log.warning("event queue full; dropped event id=%s", oldest.event_id)
        pending = _Pending(event_id, body, self._clock())
        self._all[event_id] = pending
        self._ready.append(pending)
        self._wake.set()

    async def start(self) -> None:
        """Validate the subscription (the handshake), then start the worker task."""
        if self._task is not None:
            return
        for source in self._sources or ("",):
            await self._validate(hub_topic(source) if source else "")
        self._task = asyncio.create_task(self._run(), name="lifecycle-events")
        log.info("lifecycle events to %s", masked(self._url))

    async def close(self) -> None:
        """Stop the worker; events still queued are dropped (logged with their count)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._all:
            log.info("lifecycle events not delivered at shutdown count=%d", len(self._all))
        closing = getattr(self._poster, "aclose", None)
        if closing is not None:
            await closing()

    async def drain(self, timeout: float) -> bool:
        """Wait until no event waits (tests, shutdown); False if some still do after `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                while self._all:
                    await asyncio.sleep(0.01)
        except TimeoutError:
            return False
        return True

    # -- the handshake ---------------------------------------------------------------------------

    async def _validate(self, topic: str) -> None:
        code = self._new_id()
        event = validation_event(
            event_id=self._new_id(),
            topic=topic,
            validation_code=code,
            time=event_time(self._wall_clock()),
        )
        body = json.dumps([event]).encode("utf-8")
        reason = "no answer"
        for attempt in range(1, HANDSHAKE_ATTEMPTS + 1):
            try:
                answer = await self._poster.post(
                    self._url, body, self._headers("SubscriptionValidation", 0)
                )
            except EventPostError as error:
                reason = f"no answer ({error})"
                if attempt < HANDSHAKE_ATTEMPTS:
                    await asyncio.sleep(HANDSHAKE_RETRY_SECONDS * self._scale)
                continue
            problem = validation_problem(answer.status, answer.body, code)
            if problem is not None:
                raise SubscriptionValidationFailed(self._url, problem)
            log.info("Event Grid subscription validated topic=%s url=%s", topic, masked(self._url))
            return
        raise SubscriptionValidationFailed(self._url, f"{reason} after {HANDSHAKE_ATTEMPTS} tries")

    # -- delivery --------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            pending = self._next_due()
            if pending is not None:
                await self._attempt(pending)
                continue
            self._wake.clear()
            wait = self._later[0][0] - self._clock() if self._later else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    def _next_due(self) -> _Pending | None:
        now = self._clock()
        while self._later and self._later[0][0] <= now:
            self._ready.append(heapq.heappop(self._later)[2])
        while self._ready:
            pending = self._ready.popleft()
            if not pending.gone:
                return pending
        return None

    def _headers(self, kind: str, delivery_count: int) -> dict[str, str]:
        return {
            "Content-Type": "application/json; charset=utf-8",
            "aeg-event-type": kind,
            "aeg-subscription-name": SUBSCRIPTION_NAME,
            "aeg-delivery-count": str(delivery_count),
            "aeg-metadata-version": "1",
            "aeg-data-version": "1",
        }

    async def _attempt(self, pending: _Pending) -> None:
        headers = self._headers("Notification", pending.attempts)
        pending.attempts += 1
        try:
            answer = await self._poster.post(self._url, pending.body, headers)
        except EventPostError as error:
            status, reason = None, str(error)
        else:
            status, reason = answer.status, f"HTTP {answer.status}"
        if pending.gone:  # dropped from a full queue while being posted
            return
        verdict = judge(status)
        if verdict is Verdict.DELIVERED:
            self._forget(pending)
            self.delivered += 1
            return
        if verdict is Verdict.DROP:
            self._give_up(pending, f"{reason}, which Event Grid never retries to a webhook")
            return
        step = next_step(
            pending.attempts,
            age=self._clock() - pending.published,
            random=self._jitter(),
            scale=self._scale,
            max_attempts=self._max_attempts,
            ttl=self._ttl,
        )
        if isinstance(step, GiveUp):
            self._give_up(pending, f"{reason}; {step.reason}")
            return
        log.info(
            "lifecycle event id=%s attempt=%d failed (%s); retry in %.1fs",
            pending.event_id,
            pending.attempts,
            reason,
            step.delay,
        )
        heapq.heappush(self._later, (self._clock() + step.delay, next(self._ties), pending))

    def _give_up(self, pending: _Pending, why: str) -> None:
        self._forget(pending)
        self.dropped += 1
        log.warning(
            "lifecycle event id=%s dropped after %d attempt(s): %s (Event Grid would "
            "dead-letter it)",
            pending.event_id,
            pending.attempts,
            why,
        )

    def _forget(self, pending: _Pending) -> None:
        self._all.pop(pending.event_id, None)
        pending.gone = True
