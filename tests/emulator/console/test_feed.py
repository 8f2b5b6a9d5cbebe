"""The console's feed: bounded, read by cursor, and listening to the hubs only while a page is open."""

from __future__ import annotations

import asyncio

from emulator.activity import Activity, ActivityEvent
from emulator.console.feed import Feed, Gap
from emulator.hub.endpoint import Hub
from tests.emulator.hub.test_endpoint import HUB, Client, connect, new_hub, publish


def test_activity_hands_events_only_to_listeners_of_their_kind() -> None:
    """A listener for `hub.` never sees `dps.` events, and `wanted` says who listens."""
    activity = Activity()
    seen: list[str] = []
    assert not activity.wanted("hub.telemetry")
    stop = activity.listen(lambda event: seen.append(event.kind), kinds=("hub.",))
    assert activity.wanted("hub.telemetry")
    assert not activity.wanted("dps.reply")
    activity.publish("dps.reply", 1.0)
    activity.publish("hub.changed", 2.0)
    stop()
    activity.publish("hub.changed", 3.0)
    assert seen == ["hub.changed"]
    assert not activity.wanted("hub.changed")


def hub_with_activity() -> tuple[Hub, Client, Activity]:
    hub = new_hub()
    activity = Activity()
    hub.activity = activity
    client = Client()
    connect(hub, client)
    return hub, client, activity


def test_hub_publishes_telemetry_and_changes_only_when_wanted() -> None:
    """With nobody listening the hub publishes nothing; with a listener, each message and each
    twin change is one event naming the hub and device (never a key)."""
    hub, client, activity = hub_with_activity()
    publish(hub, client, "devices/dev-001/messages/events/a=1", b"first")
    events: list[ActivityEvent] = []
    activity.listen(events.append, kinds=("hub.",))
    publish(hub, client, "devices/dev-001/messages/events/a=2", b"second")
    hub.update_desired("dev-001", {"mode": "eco"}, now=1.0)
    kinds = [event.kind for event in events]
    assert kinds == ["hub.telemetry", "hub.changed"]
    telemetry = events[0].fields
    assert telemetry["hub"] == HUB
    assert telemetry["seq"] == 2
    assert telemetry["message"].body == b"second"
    assert telemetry["message"].properties == {"a": "2"}
    assert events[1].fields == {"hub": HUB, "device_id": "dev-001"}


async def collect(feed: Feed, batches: int) -> list[list[ActivityEvent | Gap]]:
    got: list[list[ActivityEvent | Gap]] = []
    async for batch in feed.follow(heartbeat=5):
        if batch is not None:
            got.append(batch)
        if len(got) == batches:
            break
    return got


def test_a_stream_gets_events_in_order_and_listens_to_hubs_only_while_open() -> None:
    """Events published while a stream is open arrive in order; the hub listener is gone after."""

    async def scenario() -> None:
        activity = Activity()
        feed = Feed(activity)
        assert not activity.wanted("hub.telemetry")
        reader = asyncio.create_task(collect(feed, 1))
        await asyncio.sleep(0.01)
        assert activity.wanted("hub.telemetry")
        for n in range(5):
            activity.publish("hub.changed", float(n), hub="h", device_id=str(n))
        batches = await asyncio.wait_for(reader, 5)
        assert [e.fields["device_id"] for e in batches[0] if isinstance(e, ActivityEvent)] == [
            "0",
            "1",
            "2",
            "3",
            "4",
        ]
        assert not activity.wanted("hub.telemetry")
        assert activity.wanted("dps.webhook")  # kept for the provisioning view's history
        feed.close()
        assert not activity.wanted("dps.webhook")

    asyncio.run(scenario())


def test_a_stream_that_falls_behind_is_told_what_it_missed() -> None:
    """The ring keeps `capacity` events: a reader that was not reading gets a Gap, then the rest."""

    async def scenario() -> None:
        activity = Activity()
        feed = Feed(activity, capacity=10)
        stream = feed.follow(heartbeat=5)
        opened = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.01)  # the stream is open, its cursor at the start
        for n in range(25):
            activity.publish("hub.changed", float(n), hub="h", device_id=str(n))
        batch = await asyncio.wait_for(opened, 5)
        assert batch is not None
        assert batch[0] == Gap(15)
        assert [e.fields["device_id"] for e in batch[1:] if isinstance(e, ActivityEvent)] == [
            str(n) for n in range(15, 25)
        ]
        await stream.aclose()
        assert feed.streams == 0

    asyncio.run(scenario())


def test_webhook_exchanges_are_kept_for_the_history_within_bounds() -> None:
    """The last `exchanges` webhook calls are kept with no page open; older ones fall off."""
    activity = Activity()
    feed = Feed(activity, exchanges=3)
    for n in range(5):
        activity.publish("dps.webhook", float(n), registration_id=f"dev-{n}")
    activity.publish("dps.reply", 9.0, client_id="dev-9")
    assert [e.fields["registration_id"] for e in feed.exchanges()] == ["dev-2", "dev-3", "dev-4"]
