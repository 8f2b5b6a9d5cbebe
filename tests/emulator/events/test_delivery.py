"""Tests for emulator.events.delivery: the handshake, Event Grid's retries and drops, no blocking."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from emulator.events.delivery import (
    EventAnswer,
    EventDelivery,
    EventPostError,
    FunctionEventPoster,
    Reply,
    SubscriptionValidationFailed,
)
from emulator.events.eventgrid import hub_topic
from emulator.hub.device_events import LifecycleEvent, LifecycleKind

HUB = "toasters.azure-devices.net"
URL = "http://h/runtime/webhooks/EventGrid?functionName=f&code=the-system-key"
NOW = 1_800_000_000.25
FAST = 0.001  # Event Grid's 10 s first retry becomes 10 ms


def connected(device: str) -> LifecycleEvent:
    return LifecycleEvent(
        kind=LifecycleKind.CONNECTED, hub=HUB, device_id=device, time=NOW, sequence_number="1"
    )


def ids() -> Iterator[str]:
    count = 0
    while True:
        count += 1
        yield f"id-{count}"


class Endpoint:
    """A scripted webhook: answers the handshake like the Functions trigger, then events from
    `script` by device id (each list's last answer repeats; EventPostError acts as no answer)."""

    def __init__(self, script: Mapping[str, list[int | Exception]] | None = None) -> None:
        self.script = {device: list(answers) for device, answers in (script or {}).items()}
        self.poster = FunctionEventPoster(self.answer)

    def answer(self, url: str, body: Any, headers: Mapping[str, str]) -> Reply:
        if headers["aeg-event-type"] == "SubscriptionValidation":
            code = body[0]["data"]["validationCode"]
            return EventAnswer(200, json.dumps({"validationResponse": code}).encode())
        answers = self.script.get(body[0]["data"]["deviceId"], [202])
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def events(self) -> list[tuple[str, str, str]]:
        """(device, event id, aeg-delivery-count) of each Notification POST, in order."""
        return [
            (body[0]["data"]["deviceId"], body[0]["id"], headers["aeg-delivery-count"])
            for _, body, headers in self.poster.calls
            if headers["aeg-event-type"] == "Notification"
        ]


def run(endpoint: Endpoint, devices: list[str], **options: Any) -> EventDelivery:
    """Deliver one Connected event per device through `endpoint`; return the finished delivery."""

    async def scenario() -> EventDelivery:
        delivery = EventDelivery(
            URL, endpoint.poster, sources=(HUB,), scale=FAST, new_id=ids().__next__, **options
        )
        await delivery.start()
        for device in devices:
            delivery.enqueue(connected(device))
        assert await delivery.drain(10)
        await delivery.close()
        return delivery

    return asyncio.run(scenario())


def test_the_handshake_comes_first_and_carries_a_validation_code() -> None:
    """Before any event: one SubscriptionValidation POST per hub, Event Grid's shape."""
    endpoint = Endpoint()
    run(endpoint, ["a"])
    (url, body, headers), *rest = endpoint.poster.calls
    assert url == URL
    assert headers["aeg-event-type"] == "SubscriptionValidation"
    [event] = body
    assert event["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent"
    assert (event["topic"], event["subject"], event["dataVersion"]) == (hub_topic(HUB), "", "1")
    assert event["data"]["validationCode"]
    assert [h["aeg-event-type"] for _, _, h in rest] == ["Notification"]


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (EventAnswer(202), "202 does not validate"),
        (EventAnswer(401), "HTTP 401"),
        (EventAnswer(200, b'{"validationResponse": "another"}'), "not the validationCode"),
        (EventAnswer(200, b"ok"), "not JSON"),
        (EventAnswer(200), "without validationResponse"),
    ],
)
def test_an_endpoint_failing_the_handshake_stops_the_start(answer: EventAnswer, why: str) -> None:
    """Anything but 200 echoing the code fails start(), naming why and masking the key."""
    poster = FunctionEventPoster(lambda url, body, headers: answer)
    delivery = EventDelivery(URL, poster, sources=(HUB,), scale=FAST)
    with pytest.raises(SubscriptionValidationFailed) as caught:
        asyncio.run(delivery.start())
    assert why in str(caught.value)
    assert "the-system-key" not in str(caught.value)
    assert len(poster.calls) == 1


def test_an_endpoint_that_never_answers_the_handshake_is_tried_three_times() -> None:
    """No answer: the handshake is made again (5 s later, scaled), then start() fails."""

    def down(url: str, body: Any, headers: Any) -> Reply:
        raise EventPostError("http://h/?****: ConnectError")

    poster = FunctionEventPoster(down)
    with pytest.raises(SubscriptionValidationFailed) as caught:
        asyncio.run(EventDelivery(URL, poster, scale=FAST).start())
    assert "no answer" in str(caught.value)
    assert len(poster.calls) == 3


def test_failures_are_retried_with_the_same_id_and_a_rising_delivery_count() -> None:
    """No answer, 500, 404, 408 and 205 are retried; 202 delivers; the event id never changes."""
    endpoint = Endpoint({"a": [EventPostError("x"), 500, 404, 408, 205, 202]})
    delivery = run(endpoint, ["a"])
    assert endpoint.events() == [("a", "id-3", str(count)) for count in range(6)]
    assert (delivery.delivered, delivery.dropped) == (1, 0)


@pytest.mark.parametrize("status", [400, 401, 403, 413])
def test_statuses_event_grid_never_retries_drop_the_event(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """400, 401, 403 and 413 are not retried: one attempt, dropped, and a log line says why."""
    endpoint = Endpoint({"a": [status, 202]})
    delivery = run(endpoint, ["a", "b"])
    assert [device for device, _, _ in endpoint.events()] == ["a", "b"]
    assert (delivery.delivered, delivery.dropped) == (1, 1)
    assert f"HTTP {status}, which Event Grid never retries" in caplog.text
    assert "the-system-key" not in caplog.text


def test_a_failing_event_does_not_hold_back_later_ones() -> None:
    """While one event waits for its retry, the next is delivered: order is not kept."""
    endpoint = Endpoint({"a": [503, 202]})
    delivery = run(endpoint, ["a", "b"])
    assert [device for device, _, _ in endpoint.events()] == ["a", "b", "a"]
    assert delivery.delivered == 2


def test_an_event_is_dropped_after_the_attempt_limit() -> None:
    """An endpoint that keeps failing gets max_attempts tries, then the event is dropped."""
    endpoint = Endpoint({"a": [500]})
    delivery = run(endpoint, ["a"], max_attempts=4)
    assert len(endpoint.events()) == 4
    assert (delivery.delivered, delivery.dropped) == (0, 1)


def test_full_queue_drops_the_oldest_without_blocking() -> None:
    """enqueue never blocks: past max_queued the oldest event is dropped and counted."""
    delivery = EventDelivery("http://h/", FunctionEventPoster(lambda *_: 202), max_queued=2)
    for device in ("a", "b", "c"):
        delivery.enqueue(
            LifecycleEvent(kind=LifecycleKind.CREATED, hub=HUB, device_id=device, time=NOW)
        )
    assert (delivery.pending, delivery.dropped) == (2, 1)
