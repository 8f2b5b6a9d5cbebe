"""Retire and reinstate: block (or unblock) provisioning in the store, then disable (or enable) the
device's identity in its hub.

Order matters: the store is written first, because that is what makes the webhook deny the device;
the hub is best effort after that. The result says plainly whether the hub was touched:

- credentials configured and the hub call worked → `hub_touched=True`;
- no credentials for that hub → "no credentials for hub X: provisioning blocked, hub not touched";
- the hub call failed → the same, with the error type (never its message: it may hold a URL with a
  signature).

The hub client sits behind the `HubRegistry` seam. `MemoryHubRegistry` is the in-memory twin for
tests; `RegistryManagerHub` wraps `azure.iot.hub.IoTHubRegistryManager`, imported inside the
function that builds it so that importing this module (and the Functions app) never loads
azure-iot-hub and its native uamqp at cold start. It changes only `status` and keeps the keys: it
reads the device and writes it back with its etag.

Errors: `HubRegistryError` (and `HubDeviceNotFound`) from a `HubRegistry`; the store's own errors
propagate (a retire that cannot reach the store did not happen).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from store.base import Store
from store.logline import Quoted
from store.records import DeviceRecord, DeviceStatus
from store.settings import StoreSettings

log = logging.getLogger(__name__)


class HubRegistryError(Exception):
    """A hub registry call failed."""


class HubDeviceNotFound(HubRegistryError):
    """The hub has no identity with that device id."""


class HubRegistry(Protocol):
    """The one hub operation retire needs."""

    def set_device_status(self, device_id: str, *, enabled: bool) -> None:
        """Enable or disable the device identity; `HubDeviceNotFound` if it does not exist."""


HubRegistryFactory = Callable[[str], HubRegistry | None]
"""Hub host name → a registry client, or None when no credentials are configured for that hub."""


class MemoryHubRegistry:
    """In-memory identity registry: device id → enabled."""

    def __init__(self, devices: dict[str, bool] | None = None) -> None:
        self.devices: dict[str, bool] = dict(devices or {})

    def set_device_status(self, device_id: str, *, enabled: bool) -> None:
        """Flip `enabled`; `HubDeviceNotFound` for an unknown id."""
        if device_id not in self.devices:
            raise HubDeviceNotFound(f"deviceId: no identity {device_id!r} in the hub")
        self.devices[device_id] = enabled


class RegistryManagerHub:
    """`HubRegistry` over azure-iot-hub's `IoTHubRegistryManager` (REST for this call)."""

    def __init__(self, manager: Any) -> None:
        self._manager = manager

    @classmethod
    def from_connection_string(cls, connection_string: str) -> RegistryManagerHub:
        """Build from a hub service connection string (imports azure-iot-hub now, not earlier)."""
        from azure.iot.hub import IoTHubRegistryManager  # noqa: PLC0415 -- lazy: heavy, native

        return cls(IoTHubRegistryManager.from_connection_string(connection_string))

    @classmethod
    def from_managed_identity(cls, hub: str) -> RegistryManagerHub:
        """Build with the app's managed identity (azure-identity, pinned in requirements.txt)."""
        from azure.identity import DefaultAzureCredential  # noqa: PLC0415
        from azure.iot.hub import IoTHubRegistryManager  # noqa: PLC0415

        return cls(IoTHubRegistryManager.from_token_credential(hub, DefaultAzureCredential()))

    def set_device_status(self, device_id: str, *, enabled: bool) -> None:
        """Read the device, set `status`, write it back with its etag (keys unchanged)."""
        from msrest.exceptions import HttpOperationError  # noqa: PLC0415 -- ships with azure-iot-hub

        try:
            device = self._manager.get_device(device_id)
            device.status = "enabled" if enabled else "disabled"
            etag = device.etag or "*"
            self._manager.protocol.devices.create_or_update_identity(
                device_id, device, etag if etag.startswith('"') else f'"{etag}"'
            )
        except HttpOperationError as exc:
            status = getattr(exc.response, "status_code", None)
            if status == 404:
                raise HubDeviceNotFound(f"deviceId: no identity {device_id!r} in the hub") from None
            raise HubRegistryError(f"hub registry answered {status}") from None
        except Exception as exc:
            raise HubRegistryError(f"hub registry call failed ({type(exc).__name__})") from None


def registry_factory(settings: StoreSettings) -> HubRegistryFactory:
    """Hubs from settings: a connection string per hub, else managed identity if enabled, else None."""

    def factory(hub: str) -> HubRegistry | None:
        connection_string = settings.hub_connection_string(hub)
        if connection_string:
            return RegistryManagerHub.from_connection_string(connection_string)
        if settings.use_managed_identity:
            return RegistryManagerHub.from_managed_identity(hub)
        return None

    return factory


@dataclass(frozen=True, kw_only=True)
class RetireResult:
    """The stored row after the change, and what happened in the hub."""

    device: DeviceRecord
    hub: str | None
    hub_touched: bool
    message: str


def retire(
    store: Store,
    registration_id: str,
    *,
    reason: str | None,
    now: datetime,
    hubs: HubRegistryFactory,
) -> RetireResult:
    """Retire in the store (provisioning blocked), then disable the identity in its hub."""
    device = store.set_status(registration_id, DeviceStatus.RETIRED, reason=reason, now=now)
    return _apply_to_hub(device, hubs, enabled=False, done="provisioning blocked")


def reinstate(
    store: Store, registration_id: str, *, now: datetime, hubs: HubRegistryFactory
) -> RetireResult:
    """Reinstate in the store (provisioning allowed), then enable the identity in its hub."""
    device = store.set_status(registration_id, DeviceStatus.ACTIVE, reason=None, now=now)
    return _apply_to_hub(device, hubs, enabled=True, done="provisioning allowed")


def _apply_to_hub(
    device: DeviceRecord, hubs: HubRegistryFactory, *, enabled: bool, done: str
) -> RetireResult:
    hub = device.hub
    verb = "enabled" if enabled else "disabled"
    if hub is None:
        return RetireResult(
            device=device,
            hub=None,
            hub_touched=False,
            message=f"no known hub: {done}, hub not touched",
        )
    device_id = device.device_id or device.registration_id
    try:
        registry = hubs(hub)
    except Exception as exc:  # a client that cannot even be built must not undo the store change
        log.warning("hub client for %s could not be built: %s", Quoted(hub), type(exc).__name__)
        return RetireResult(
            device=device,
            hub=hub,
            hub_touched=False,
            message=f"hub {hub} client unavailable ({type(exc).__name__}): {done}, hub not touched",
        )
    if registry is None:
        return RetireResult(
            device=device,
            hub=hub,
            hub_touched=False,
            message=f"no credentials for hub {hub}: {done}, hub not touched",
        )
    try:
        registry.set_device_status(device_id, enabled=enabled)
    except HubRegistryError as exc:
        log.warning(
            "hub %s: setting %s %s failed: %s",
            Quoted(hub),
            Quoted(device_id),
            verb,
            Quoted(str(exc)),
        )
        return RetireResult(
            device=device,
            hub=hub,
            hub_touched=False,
            message=f"hub {hub}: {exc}: {done}, hub not touched",
        )
    return RetireResult(
        device=device,
        hub=hub,
        hub_touched=True,
        message=f"{done}; device {device_id} {verb} in hub {hub}",
    )
