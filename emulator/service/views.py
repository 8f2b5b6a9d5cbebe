"""A device and its twin in JSON, as the service REST API and lifecycle events show them. Pure.

Shapes from docs/protocol/hub-service-rest.md §7 (camelCase, swagger `Device` and `Twin`):
a device has `deviceId, generationId, etag, connectionState, status, statusReason,
connectionStateUpdatedTime, statusUpdatedTime, lastActivityTime, cloudToDeviceMessageCount,
authentication, capabilities`; a twin has `deviceId, etag, deviceEtag, version, status,
statusReason, statusUpdateTime` (sic: not `Updated`), `connectionState, lastActivityTime,
cloudToDeviceMessageCount, authenticationType, x509Thumbprint, capabilities, tags, properties`.
Times never set are `0001-01-01T00:00:00Z`, as the service shows them.
"""

from __future__ import annotations

from typing import Any

from emulator.hub.twin import format_timestamp
from emulator.hub.views import DeviceView

__all__ = ["NEVER", "device_json", "twin_json"]

NEVER = "0001-01-01T00:00:00Z"


def _time(value: float | None) -> str:
    return NEVER if value is None else format_timestamp(value)


def device_json(view: DeviceView) -> dict[str, Any]:
    """The `Device` body of GET/PUT `/devices/{id}` and of the device list."""
    return {
        "deviceId": view.device_id,
        "generationId": view.generation_id,
        "etag": view.etag,
        "connectionState": "Connected" if view.connected else "Disconnected",
        "status": "enabled" if view.enabled else "disabled",
        "statusReason": view.status_reason,
        "connectionStateUpdatedTime": _time(view.connection_updated),
        "statusUpdatedTime": _time(view.status_updated),
        "lastActivityTime": _time(view.last_activity),
        "cloudToDeviceMessageCount": view.c2d_count,
        "authentication": {
            "symmetricKey": {"primaryKey": view.primary_key, "secondaryKey": view.secondary_key},
            "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
            "type": "sas",
        },
        "capabilities": {"iotEdge": view.iot_edge},
    }


def twin_json(view: DeviceView) -> dict[str, Any]:
    """The `Twin` body of `/twins/{id}`, of query results and of DeviceCreated/Deleted events."""
    body = view.twin.service_view(view.device_id)
    return {
        "deviceId": body.pop("deviceId"),
        "etag": body.pop("etag"),
        "deviceEtag": view.etag,
        "version": body.pop("version"),
        "status": "enabled" if view.enabled else "disabled",
        "statusReason": view.status_reason,
        "statusUpdateTime": _time(view.status_updated),
        "connectionState": "Connected" if view.connected else "Disconnected",
        "lastActivityTime": _time(view.last_activity),
        "cloudToDeviceMessageCount": view.c2d_count,
        "authenticationType": "sas",
        "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
        "capabilities": {"iotEdge": view.iot_edge},
        **body,
    }
