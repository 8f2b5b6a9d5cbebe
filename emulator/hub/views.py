"""A device at one moment, as a value: identity, twin and connection state. Pure.

What the service API's JSON (`service.views`), lifecycle events and the operator API show of a
device. The registry builds it (`Registry.device_view`); the device endpoint supplies the
connection state it alone knows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emulator.hub.twin import TwinDocument

__all__ = ["ConnectionState", "DeviceView"]


@dataclass(frozen=True, kw_only=True)
class ConnectionState:
    """What the registry's views say about a device's connection (the endpoint knows it)."""

    connected: bool = False
    updated: float | None = None
    last_activity: float | None = None
    c2d_count: int = 0


@dataclass(frozen=True, kw_only=True)
class DeviceView:
    """A device at one moment: identity, twin and connection state (what the JSON views show)."""

    device_id: str
    generation_id: str
    etag: str
    enabled: bool
    status_reason: str | None
    status_updated: float | None
    primary_key: str = field(repr=False)
    secondary_key: str = field(repr=False)
    iot_edge: bool
    connected: bool
    connection_updated: float | None
    last_activity: float | None
    c2d_count: int
    twin: TwinDocument = field(repr=False)
