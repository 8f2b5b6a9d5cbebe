"""Device lifecycle events in Event Grid's form. Pure: no I/O, no clock, no ids drawn.

The hub produces a `hub.device_events.LifecycleEvent`; `event_grid_event` shapes it as IoT Hub
does and `events.delivery.EventDelivery` posts it. The Event Grid shape is IoT Hub's
(docs/protocol/lifecycle-events.md §2-§3, fixtures in tests/fixtures/eventgrid/):

- envelope `id, topic, subject = devices/{deviceId}, eventType, eventTime, data, dataVersion "1",
  metadataVersion "1"`; the body is a JSON array;
- Created/Deleted `data = {"twin": {...}, "hubName", "deviceId"}`;
- Connected/Disconnected `data = {"deviceConnectionStateEventInfo": {"sequenceNumber"}, "hubName",
  "deviceId"}`.

The Created/Deleted twin is the device's twin as the service API shows it (`service.views`).
`hubName` is the hub's resource name: the first label of its host name (the whole name for an IP).
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

from emulator.hub.device_events import LifecycleEvent
from emulator.service.views import twin_json

__all__ = ["event_grid_event", "event_time", "hub_resource_name", "hub_topic"]

_TOPIC = "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/emulator/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/{hub}"


def hub_resource_name(host: str) -> str:
    """`toasters.azure-devices.net` -> `toasters`; an IP address stays whole."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host.split(".", 1)[0]
    return host


def hub_topic(host: str) -> str:
    """The Event Grid `topic` of a hub's events: its resource id, upper-cased as IoT Hub's are."""
    return _TOPIC.format(hub=hub_resource_name(host).upper())


def event_time(now: float) -> str:
    """ISO 8601 UTC with 7 fractional digits, as in IoT Hub's samples."""
    moment = datetime.fromtimestamp(now, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond * 10:07d}Z"


def event_grid_event(event: LifecycleEvent, *, event_id: str) -> dict[str, Any]:
    """The Event Grid schema form of one event (one element of the posted array)."""
    name = hub_resource_name(event.hub)
    data: dict[str, Any]
    if event.kind.is_connection:
        data = {
            "deviceConnectionStateEventInfo": {"sequenceNumber": event.sequence_number},
            "hubName": name,
            "deviceId": event.device_id,
        }
    else:
        twin = twin_json(event.device) if event.device is not None else {}
        data = {"twin": twin, "hubName": name, "deviceId": event.device_id}
    return {
        "id": event_id,
        "topic": hub_topic(event.hub),
        "subject": f"devices/{event.device_id}",
        "eventType": event.kind.value,
        "eventTime": event_time(event.time),
        "data": data,
        "dataVersion": "1",
        "metadataVersion": "1",
    }
