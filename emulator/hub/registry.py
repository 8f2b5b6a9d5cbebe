"""A hub's identity registry: device identities and their twins, with etags and lifecycle events.

Pure (no sockets, no clock reads: `now` is an argument). The service REST API and DPS change it;
the MQTT device endpoint (`hub.endpoint.Hub`, a subclass) adds connections and reacts to what
changes here through three hooks: a device disabled (drop its connection), deleted (drop it and
forget its session), desired properties changed (push the patch to the device).

- Create / update / delete with device etags (`if_match` is `"*"` or an etag, quotes already
  stripped; None means "must not exist" for create), twin patch / replace with twin etags.
- A device created (by DPS or the service API) or deleted becomes a `LifecycleEvent` handed to
  `on_event`, carrying the device as it was (`DeviceView`); never blocks.
- Every change to a device's identity or twin (not its connection) calls `on_change(hub, device_id)`
  after it is made, before anyone is answered: persistence journals it there (`persistence`); and
  it is published as `hub.changed` on `activity` when one is set and someone listens (the console).

Errors:

    HubError               base; `status` is the HTTP status the service API would answer
    ├── UnknownHub         a hub name that is not configured (404)
    ├── DeviceNotFound     no such device in this hub (404)
    ├── DeviceNotOnline    a direct method for a device that cannot receive it (404)
    ├── DeviceAlreadyExists  create of an id that is registered (409)
    ├── PreconditionFailed   an etag that is not the current one (412)
    └── c2d.DeviceMaximumQueueDepthExceeded  a C2D message for a full device queue (403)
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emulator.activity import Activity
from emulator.hub.device_events import LifecycleEvent, LifecycleKind
from emulator.hub.twin import TwinDocument, TwinError
from emulator.hub.views import ConnectionState, DeviceView

__all__ = [
    "DeviceAlreadyExists",
    "DeviceIdentity",
    "DeviceNotFound",
    "DeviceNotOnline",
    "HubError",
    "PreconditionFailed",
    "Registry",
    "RegistryStatistics",
    "UnknownHub",
    "device_etag",
]


class HubError(Exception):
    """Base of the hub's errors."""

    status = 500


class UnknownHub(HubError):
    """The hub name is not one of the configured hubs."""

    status = 404


class DeviceNotFound(HubError):
    """The device does not exist in this hub."""

    status = 404


class DeviceNotOnline(HubError):
    """The device is not connected, or not subscribed to direct methods."""

    status = 404


class DeviceAlreadyExists(HubError):
    """A create for a device id that is already registered."""

    status = 409


class PreconditionFailed(HubError):
    """The `If-Match` etag is not the current etag of the device or twin."""

    status = 412


def device_etag(counter: int) -> str:
    """A device etag: base64 of the decimal counter (`MQ==` for 1), as old captures show."""
    return base64.b64encode(str(counter).encode("ascii")).decode("ascii")


@dataclass(frozen=True, kw_only=True)
class DeviceIdentity:
    """A device in a hub's identity registry (SAS authentication only)."""

    device_id: str
    primary_key: str = field(repr=False)
    secondary_key: str = field(repr=False)
    enabled: bool = True
    status_reason: str | None = None
    status_updated: float | None = None
    generation_id: str = ""
    etag_counter: int = 1
    iot_edge: bool = False

    @property
    def etag(self) -> str:
        """The device (not twin) etag."""
        return device_etag(self.etag_counter)


@dataclass(frozen=True, kw_only=True)
class RegistryStatistics:
    """What `/statistics/devices` and `/statistics/service` report."""

    total: int
    enabled: int
    disabled: int
    connected: int


class Registry:
    """One hub's devices and twins."""

    def __init__(
        self,
        name: str,
        *,
        clock: Callable[[], float] = lambda: 0.0,
        on_event: Callable[[LifecycleEvent], None] | None = None,
    ) -> None:
        self.name = name
        self._clock = clock
        self._on_event = on_event
        self._devices: dict[str, DeviceIdentity] = {}
        self._twins: dict[str, TwinDocument] = {}
        self.on_change: Callable[[str, str], None] | None = None
        self.activity: Activity | None = None  # watchers (`emulator.activity`), set by the app

    def upsert_device(
        self,
        device_id: str,
        *,
        primary_key: str,
        secondary_key: str,
        twin: TwinDocument | None,
        now: float,
        enabled: bool = True,
    ) -> DeviceIdentity:
        """Create or update a device; `twin=None` keeps an existing twin (or starts an empty one)."""
        previous = self._devices.get(device_id)
        identity = DeviceIdentity(
            device_id=device_id,
            primary_key=primary_key,
            secondary_key=secondary_key,
            enabled=enabled,
            status_reason=previous.status_reason if previous else None,
            status_updated=(
                now
                if previous and previous.enabled != enabled
                else (previous.status_updated if previous else None)
            ),
            generation_id=previous.generation_id if previous else _generation_id(now),
            etag_counter=previous.etag_counter + 1 if previous else 1,
            iot_edge=previous.iot_edge if previous else False,
        )
        self._devices[device_id] = identity
        if twin is not None:
            self._twins[device_id] = twin
        elif device_id not in self._twins:
            self._twins[device_id] = TwinDocument.new(None, now=now)
        self._changed(device_id)
        if previous is None:
            self._emit_identity(LifecycleKind.CREATED, device_id, now)
        if not enabled:
            self._identity_disabled(device_id, now)
        return identity

    def announce_model(self, device_id: str, model_id: str | None) -> None:
        """A device connected announcing an IoT Plug and Play model: its twin's `modelId` is it.

        A CONNECT without one leaves the last announced model (inference: IoT Hub documents how
        the model id gets into the twin, not that a plain connection clears it).
        """
        twin = self._twins.get(device_id)
        if model_id is None or twin is None or twin.model_id == model_id:
            return
        self._twins[device_id] = twin.with_model_id(model_id)
        self._changed(device_id)

    def restore_device(self, identity: DeviceIdentity, twin: TwinDocument) -> None:
        """Put back a persisted device (`emulator.persistence`): no lifecycle event, no checks."""
        self._devices[identity.device_id] = identity
        self._twins[identity.device_id] = twin

    def restore_absence(self, device_id: str) -> None:
        """Replay a persisted delete (`emulator.persistence`): no lifecycle event, no checks."""
        self._devices.pop(device_id, None)
        self._twins.pop(device_id, None)

    def delete_device(self, device_id: str, *, now: float | None = None) -> None:
        """Remove a device, its twin and session, and drop its connection; missing is fine."""
        when = self._clock() if now is None else now
        if device_id in self._devices:
            self._emit_identity(LifecycleKind.DELETED, device_id, when)
        existed = self._devices.pop(device_id, None) is not None
        self._twins.pop(device_id, None)
        if existed:
            self._changed(device_id)
        self._identity_deleted(device_id, when)

    def device(self, device_id: str) -> DeviceIdentity | None:
        """The registry entry, or None."""
        return self._devices.get(device_id)

    def device_ids(self) -> list[str]:
        """Every device id in the registry, sorted."""
        return sorted(self._devices)

    def twin(self, device_id: str) -> TwinDocument | None:
        """The device's twin, or None when the device does not exist."""
        return self._twins.get(device_id)

    def device_view(self, device_id: str) -> DeviceView | None:
        """The registry entry, twin and connection state together, or None."""
        identity = self._devices.get(device_id)
        twin = self._twins.get(device_id)
        if identity is None or twin is None:
            return None
        connection = self._connection_state(device_id)
        return DeviceView(
            device_id=device_id,
            generation_id=identity.generation_id,
            etag=identity.etag,
            enabled=identity.enabled,
            status_reason=identity.status_reason,
            status_updated=identity.status_updated,
            primary_key=identity.primary_key,
            secondary_key=identity.secondary_key,
            iot_edge=identity.iot_edge,
            connected=connection.connected,
            connection_updated=connection.updated,
            last_activity=connection.last_activity,
            c2d_count=connection.c2d_count,
            twin=twin,
        )

    def create_device(
        self,
        device_id: str,
        *,
        primary_key: str,
        secondary_key: str,
        enabled: bool,
        status_reason: str | None,
        iot_edge: bool,
        now: float,
    ) -> DeviceIdentity:
        """Register a new device (service PUT without If-Match); DeviceAlreadyExists if taken."""
        if device_id in self._devices:
            raise DeviceAlreadyExists(f"A device with ID '{device_id}' is already registered.")
        identity = DeviceIdentity(
            device_id=device_id,
            primary_key=primary_key,
            secondary_key=secondary_key,
            enabled=enabled,
            status_reason=status_reason,
            generation_id=_generation_id(now),
            iot_edge=iot_edge,
        )
        self._devices[device_id] = identity
        self._twins[device_id] = TwinDocument.new(None, now=now)
        self._changed(device_id)
        self._emit_identity(LifecycleKind.CREATED, device_id, now)
        return identity

    def update_device(
        self,
        device_id: str,
        *,
        if_match: str,
        primary_key: str,
        secondary_key: str,
        enabled: bool,
        status_reason: str | None,
        iot_edge: bool,
        now: float,
    ) -> DeviceIdentity:
        """Replace a device's keys and status under `if_match`; disabling drops its connection."""
        current = self._devices.get(device_id)
        if current is None:
            raise DeviceNotFound(f"Device {device_id} not registered")
        _check_etag(if_match, current.etag, "device")
        identity = DeviceIdentity(
            device_id=device_id,
            primary_key=primary_key,
            secondary_key=secondary_key,
            enabled=enabled,
            status_reason=status_reason,
            status_updated=now if enabled != current.enabled else current.status_updated,
            generation_id=current.generation_id,
            etag_counter=current.etag_counter + 1,
            iot_edge=iot_edge,
        )
        self._devices[device_id] = identity
        self._changed(device_id)
        if not enabled:
            self._identity_disabled(device_id, now)
        return identity

    def remove_device(self, device_id: str, *, if_match: str, now: float) -> None:
        """Delete a device under `if_match` (`*` or its etag); DeviceNotFound if absent."""
        current = self._devices.get(device_id)
        if current is None:
            raise DeviceNotFound(f"Device {device_id} not registered")
        _check_etag(if_match, current.etag, "device")
        self.delete_device(device_id, now=now)

    def patch_twin(
        self,
        device_id: str,
        *,
        tags: object,
        desired: object,
        if_match: str,
        now: float,
    ) -> TwinDocument:
        """Merge tags and desired properties (None leaves a section alone); pushes desired."""
        twin = self._require_twin(device_id)
        _check_etag(if_match, twin.etag, "twin")
        if tags is not None:
            twin = twin.patch_tags(tags, now=now)
        if desired is not None:
            twin = twin.patch_desired(desired, now=now)
        self._twins[device_id] = twin
        self._changed(device_id)
        if isinstance(desired, dict) and desired:
            self._desired_changed(device_id, twin, desired)
        return twin

    def replace_twin(
        self,
        device_id: str,
        *,
        tags: object,
        desired: object,
        if_match: str,
        now: float,
    ) -> TwinDocument:
        """Replace tags and desired properties (service PUT); the device gets the new desired."""
        twin = self._require_twin(device_id)
        _check_etag(if_match, twin.etag, "twin")
        twin = twin.replace_tags(tags if tags is not None else {}, now=now)
        twin = twin.replace_desired(desired if desired is not None else {}, now=now)
        self._twins[device_id] = twin
        self._changed(device_id)
        self._desired_changed(device_id, twin, dict(twin.desired))
        return twin

    def update_desired(self, device_id: str, patch: object, *, now: float) -> TwinDocument:
        """Patch desired properties (null deletes) and push the patch to a subscribed device."""
        if not isinstance(patch, dict):
            raise TwinError("properties.desired", "a JSON object")
        twin = self._require_twin(device_id).patch_desired(patch, now=now)
        self._twins[device_id] = twin
        self._changed(device_id)
        self._desired_changed(device_id, twin, patch)
        return twin

    def _require_twin(self, device_id: str) -> TwinDocument:
        twin = self._twins.get(device_id)
        if twin is None:
            raise DeviceNotFound(f"device {device_id!r} does not exist in hub {self.name}")
        return twin

    def statistics(self) -> RegistryStatistics:
        """Device counts for the statistics endpoints."""
        enabled = sum(1 for identity in self._devices.values() if identity.enabled)
        return RegistryStatistics(
            total=len(self._devices),
            enabled=enabled,
            disabled=len(self._devices) - enabled,
            connected=sum(self._connection_state(d).connected for d in self._devices),
        )

    def _changed(self, device_id: str) -> None:
        if self.on_change is not None:
            self.on_change(self.name, device_id)
        if self.activity is not None and self.activity.wanted("hub.changed"):
            self.activity.publish("hub.changed", self._clock(), hub=self.name, device_id=device_id)

    def _emit_identity(self, kind: LifecycleKind, device_id: str, now: float) -> None:
        if self._on_event is None:
            return
        self._on_event(
            LifecycleEvent(
                kind=kind,
                hub=self.name,
                device_id=device_id,
                time=now,
                device=self.device_view(device_id),
            )
        )

    # -- what the device endpoint adds (no connections here) ------------------------------------

    def _connection_state(self, device_id: str) -> ConnectionState:
        return ConnectionState()

    def _identity_disabled(self, device_id: str, now: float) -> None:
        """A device was disabled: the endpoint drops its connection."""

    def _identity_deleted(self, device_id: str, now: float) -> None:
        """A device was deleted: the endpoint drops its connection and forgets its session."""

    def _desired_changed(self, device_id: str, twin: TwinDocument, patch: dict[str, Any]) -> None:
        """Desired properties changed: the endpoint pushes the patch to the device."""


def _generation_id(now: float) -> str:
    """An 18-digit id from the creation time (.NET ticks), as the service's look."""
    return str(int(now * 10_000_000) + 621_355_968_000_000_000)


def _check_etag(if_match: str, current: str, what: str) -> None:
    if if_match not in ("*", current):
        raise PreconditionFailed(f"{what} etag {if_match!r} is not the current etag")
