"""Event Grid's delivery policy for a webhook subscription, as rules. Pure: no I/O, no clock.

What Event Grid does with an endpoint's answer (docs/protocol/lifecycle-events.md §4-§5; Microsoft's
"Event Grid message delivery and retry" and "Webhook event delivery" pages):

    answer                                 outcome
    200, 201, 202, 203, 204                delivered (only these count)
    400, 401, 403, 413                     DROP: a webhook's "will never succeed" codes; Event
                                           Grid dead-letters the event, or drops it when no
                                           dead-letter destination is set (the emulator has none)
    any other status, or none within 30 s  RETRY after the next step of the schedule

    schedule  10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h, 6 h, then every 12 h,
              each step stretched by up to 10 % at random ("a small randomization")
    limits    at most 30 delivery attempts, and never past the event's time to live (24 h):
              an event whose next attempt would fall after it is dropped

The schedule is the 2024 revision of the page; earlier revisions went on hourly after 1 h. The
randomization's size is not published: up to +10 % is this emulator's choice (a step is a lower
bound: "retry after 10 seconds or more"). Event Grid may also skip steps for an endpoint that is
down for long; the emulator does not. `scale` multiplies every step and the time to live, for
tests (`--time-scale`).

The subscription validation handshake (before any event): one `SubscriptionValidation` POST of a
`Microsoft.EventGrid.SubscriptionValidationEvent` carrying `data.validationCode`; the endpoint
must answer 200 with `{"validationResponse": <that code>}` (202 does not count). An attempt
with no answer within 30 s is made again 5 s later. Event Grid's other way, a GET on
`data.validationUrl` within 5 minutes, is not emulated: the event carries no `validationUrl`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from allocation.errors import RequestError
from allocation.strict_json import decode

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "EVENT_TTL_SECONDS",
    "HANDSHAKE_ATTEMPTS",
    "HANDSHAKE_RETRY_SECONDS",
    "RETRY_SCHEDULE",
    "GiveUp",
    "Retry",
    "Verdict",
    "judge",
    "next_step",
    "retry_delay",
    "validation_event",
    "validation_problem",
]

RETRY_SCHEDULE = (10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0, 21600.0, 43200.0)
JITTER = 0.10  # each step stretched by up to 10 %
DEFAULT_MAX_ATTEMPTS = 30
EVENT_TTL_SECONDS = 24 * 3600.0
SUCCESS = frozenset({200, 201, 202, 203, 204})
NOT_RETRIED = frozenset({400, 401, 403, 413})
HANDSHAKE_ATTEMPTS = 3
HANDSHAKE_RETRY_SECONDS = 5.0
VALIDATION_EVENT_TYPE = "Microsoft.EventGrid.SubscriptionValidationEvent"


class Verdict(Enum):
    """What becomes of an event after one delivery attempt."""

    DELIVERED = "delivered"
    DROP = "drop"  # a status Event Grid never retries
    RETRY = "retry"


def judge(status: int | None) -> Verdict:
    """The outcome of an attempt that got `status` (None: no answer)."""
    if status in SUCCESS:
        return Verdict.DELIVERED
    if status in NOT_RETRIED:
        return Verdict.DROP
    return Verdict.RETRY


def retry_delay(attempts: int, *, random: float, scale: float = 1.0) -> float:
    """Seconds to wait after the `attempts`-th failed attempt (1 = the first); `random` in [0, 1)."""
    if attempts < 1:
        raise ValueError("attempts: expected 1 or more")
    step = RETRY_SCHEDULE[min(attempts, len(RETRY_SCHEDULE)) - 1]
    return step * (1.0 + JITTER * random) * scale


@dataclass(frozen=True)
class Retry:
    """Try again after `delay` seconds."""

    delay: float


@dataclass(frozen=True)
class GiveUp:
    """Stop: `reason` says which limit was reached."""

    reason: str


def next_step(
    attempts: int,
    *,
    age: float,
    random: float,
    scale: float = 1.0,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ttl: float = EVENT_TTL_SECONDS,
) -> Retry | GiveUp:
    """After `attempts` failed attempts of an event published `age` seconds ago: when next."""
    if attempts >= max_attempts:
        return GiveUp(f"{attempts} delivery attempts, Event Grid's limit")
    delay = retry_delay(attempts, random=random, scale=scale)
    if age + delay > ttl * scale:
        return GiveUp(f"its time to live ({ttl * scale:g} s) would pass before the next attempt")
    return Retry(delay)


def validation_event(
    *, event_id: str, topic: str, validation_code: str, time: str
) -> dict[str, Any]:
    """The SubscriptionValidationEvent Event Grid posts (alone, in an array) before any event."""
    return {
        "id": event_id,
        "topic": topic,
        "subject": "",
        "data": {"validationCode": validation_code},
        "eventType": VALIDATION_EVENT_TYPE,
        "eventTime": time,
        "metadataVersion": "1",
        "dataVersion": "1",
    }


def validation_problem(status: int, body: bytes, validation_code: str) -> str | None:
    """What is wrong with an endpoint's answer to the handshake; None when it validates."""
    if status != 200:
        hint = " (202 does not validate)" if status == 202 else ""
        return f"HTTP {status}{hint}"
    try:
        answer = decode(body, field="answer") if body.strip() else None
    except RequestError as error:
        return f"HTTP 200 with a body that is not JSON ({error})"
    if not isinstance(answer, dict) or "validationResponse" not in answer:
        return "HTTP 200 without validationResponse in a JSON object"
    if answer["validationResponse"] != validation_code:
        return "HTTP 200 with a validationResponse that is not the validationCode sent"
    return None
