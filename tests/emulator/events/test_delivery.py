"""Tests for emulator.events.delivery: retries, drops what cannot succeed, never blocks."""

from __future__ import annotations

import asyncio
from typing import Any

from emulator.events.delivery import EventDelivery, EventPostError, FunctionEventPoster
from emulator.hub.device_events import LifecycleEvent, LifecycleKind

HUB = "toasters.azure-devices.net"
NOW = 1_800_000_000.25


def test_delivery_retries_then_delivers_and_drops_400() -> None:
    """No answer and 500 are retried with the same id; 400 is dropped; order is kept."""
    answers = iter([EventPostError("x"), 500, 202, 400, 202])

    def handler(url: str, body: Any, headers: Any) -> int:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    poster = FunctionEventPoster(handler)

    async def run() -> EventDelivery:
        delivery = EventDelivery(
            "http://h/runtime/webhooks/EventGrid?functionName=f&code=k",
            poster,
            retry_delays=(0.001,),
            new_id=iter(["e1", "e2", "e3"]).__next__,
        )
        for device in ("a", "b", "c"):
            delivery.enqueue(
                LifecycleEvent(
                    kind=LifecycleKind.CONNECTED,
                    hub=HUB,
                    device_id=device,
                    time=NOW,
                    sequence_number="1",
                )
            )
        await delivery.start()
        assert await delivery.drain(5)
        await delivery.close()
        return delivery

    delivery = asyncio.run(run())
    ids = [body[0]["id"] for _, body, _ in poster.calls]
    assert ids == ["e1", "e1", "e1", "e2", "e3"]
    assert [headers["aeg-delivery-count"] for _, _, headers in poster.calls] == [
        "0",
        "1",
        "2",
        "0",
        "0",
    ]
    assert all(h["aeg-event-type"] == "Notification" for _, _, h in poster.calls)
    assert (delivery.delivered, delivery.dropped) == (2, 1)


def test_full_queue_drops_the_oldest_without_blocking() -> None:
    """enqueue never blocks: past max_queued the oldest event is dropped and counted."""
    delivery = EventDelivery("http://h/", FunctionEventPoster(lambda *_: 202), max_queued=2)
    for device in ("a", "b", "c"):
        delivery.enqueue(
            LifecycleEvent(kind=LifecycleKind.CREATED, hub=HUB, device_id=device, time=NOW)
        )
    assert (delivery.pending, delivery.dropped) == (2, 1)
