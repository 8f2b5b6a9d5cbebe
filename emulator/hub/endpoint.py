"""IoT Hub, device side: identities, SAS CONNECT, sessions, twin, telemetry, C2D, direct methods.

`Hub` is one emulated IoT hub and the `ports.MqttEndpoint` the shell routes its connections to;
`Hubs` holds every hub by host name and is the `ports.HubDirectory` DPS assigns devices through.
Both are pure: no sockets, no clock reads (`now` is an argument; `Hubs` takes a clock only to
satisfy `HubDirectory`, whose methods carry no `now`), no logging of keys or tokens.

Protocol (docs/protocol/hub-mqtt.md):
- CONNECT: username `{host}/{deviceId}/?...` (host and device are the first two `/` segments),
  client id = device id, password a SAS token for `{host}/devices/{deviceId}` signed by the
  device's primary or secondary key. Unknown, disabled, wrong key, expired -> CONNACK 5.
- One connection per device id: a new CONNECT closes the older connection (§1).
- Sessions are kept per client id across connections whatever the CleanSession flag: the SDK
  never re-subscribes after a reconnect (§7). C2D waits in the session while the device is
  offline or not subscribed, up to `C2D_QUEUE_LIMIT` messages (IoT Hub's per-device limit).
- Twin GET is answered whether or not `$iothub/twin/res/#` is subscribed (§5); reported PATCH
  answers 204 with `$version`, or 400 for a patch the twin rules refuse.
- Desired patches are pushed with `$version` to a device subscribed to them; method requests
  only reach a connected device subscribed to `$iothub/methods/POST/#` (else `DeviceNotOnline`).
- Telemetry goes to the hub's message log with its property bag decoded (§3).
- Service side (the REST API in `service_api` translates to these): create / update / delete
  with device etags (`if_match` is `"*"` or an etag, quotes already stripped; None means "must
  not exist" for create), twin patch / replace with twin etags, statistics. Disabling a device
  drops its connection and refuses its next CONNECT; a desired change reaches a connected,
  subscribed device as a patch.
- Lifecycle: device created (by DPS or the service API), deleted, connected and disconnected
  become `lifecycle.LifecycleEvent` values handed to `on_event` (never blocks: the app queues
  them for `events.EventDelivery`). A connection replaced by a newer one gives only a Connected.
- `Hub` reads no clock except through `clock`, used only by the methods whose protocol carries
  no `now` (`disconnect`, `delete_device`, `drop_connection`) to time-stamp their events.
- Not emulated: module identities (`{deviceId}/{moduleId}` client ids are refused), X.509
  devices.

Errors:

    HubError               base; `status` is the HTTP status the service API would answer
    ├── UnknownHub         a hub name that is not configured (404)
    ├── DeviceNotFound     no such device in this hub (404)
    ├── DeviceNotOnline    a direct method for a device that cannot receive it (404)
    ├── DeviceAlreadyExists  create of an id that is registered (409)
    └── PreconditionFailed   an etag that is not the current one (412)
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from emulator.endpoints import CONNACK_ACCEPTED, CONNACK_NOT_AUTHORIZED, Close, Send
from emulator.events.device_events import (
    LifecycleEvent,
    LifecycleKind,
    format_sequence,
    next_sequence,
)
from emulator.hub.twin import TwinDocument, TwinError
from emulator.service.views import DeviceView, device_etag, twin_json
from sas import SasError, parse_sas_token, verify_sas_token

__all__ = [
    "C2D_QUEUE_LIMIT",
    "DeviceAlreadyExists",
    "DeviceIdentity",
    "DeviceNotFound",
    "DeviceNotOnline",
    "Hub",
    "HubError",
    "Hubs",
    "MethodResponse",
    "PreconditionFailed",
    "RegistryStatistics",
    "TelemetryMessage",
    "UnknownHub",
]

log = logging.getLogger(__name__)

C2D_QUEUE_LIMIT = 50
MESSAGE_LOG_LIMIT = 10_000  # telemetry kept per hub for tests and `tail`; older lines fall off

_TWIN_RES = "$iothub/twin/res/#"
_DESIRED = "$iothub/twin/PATCH/properties/desired/#"
_METHODS = "$iothub/methods/POST/#"


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


@dataclass(frozen=True, kw_only=True)
class TelemetryMessage:
    """One device-to-cloud message as the hub logged it."""

    device_id: str
    body: bytes
    system_properties: Mapping[str, str | None]
    properties: Mapping[str, str | None]
    enqueued_at: float


@dataclass(frozen=True)
class MethodResponse:
    """A device's answer to a direct method: status and parsed JSON payload (None if empty)."""

    status: int
    payload: Any


@dataclass
class _Session:
    """What survives a reconnect, per client id."""

    subscriptions: set[str] = field(default_factory=set)
    c2d_queue: deque[tuple[str, bytes]] = field(default_factory=deque)


@dataclass(frozen=True)
class _Live:
    send: Send
    close: Close


class Hub:
    """One emulated IoT hub: registry, twins, sessions, message log (a `ports.MqttEndpoint`)."""

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
        self._sequences: dict[str, int] = {}
        self._connection_updated: dict[str, float] = {}
        self._last_activity: dict[str, float] = {}
        self._devices: dict[str, DeviceIdentity] = {}
        self._twins: dict[str, TwinDocument] = {}
        self._sessions: dict[str, _Session] = {}
        self._live: dict[str, _Live] = {}
        self._methods: dict[str, tuple[str, Callable[[MethodResponse], None]]] = {}
        self._next_rid = 1
        self._messages: deque[TelemetryMessage] = deque(maxlen=MESSAGE_LOG_LIMIT)
        self.messages_received = 0  # every telemetry message since start, to page the log

    # -- identity registry ----------------------------------------------------------------------

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
        if previous is None:
            self._emit_identity(LifecycleKind.CREATED, device_id, now)
        if not enabled:
            self._drop(device_id, now)
        return identity

    def restore_device(self, identity: DeviceIdentity, twin: TwinDocument) -> None:
        """Put back a device as persisted (`emulator.persistence.document`): no lifecycle event, no checks."""
        self._devices[identity.device_id] = identity
        self._twins[identity.device_id] = twin

    def delete_device(self, device_id: str, *, now: float | None = None) -> None:
        """Remove a device, its twin and session, and drop its connection; missing is fine."""
        when = self._clock() if now is None else now
        if device_id in self._devices:
            self._emit_identity(LifecycleKind.DELETED, device_id, when)
        self._devices.pop(device_id, None)
        self._twins.pop(device_id, None)
        self._sessions.pop(device_id, None)
        self._drop(device_id, when)

    def device(self, device_id: str) -> DeviceIdentity | None:
        """The registry entry, or None."""
        return self._devices.get(device_id)

    def device_ids(self) -> list[str]:
        """Every device id in the registry, sorted."""
        return sorted(self._devices)

    def twin(self, device_id: str) -> TwinDocument | None:
        """The device's twin, or None when the device does not exist."""
        return self._twins.get(device_id)

    def subscriptions(self, device_id: str) -> set[str]:
        """The topic filters the device's session holds (kept across connections)."""
        session = self._sessions.get(device_id)
        return set(session.subscriptions) if session is not None else set()

    def is_connected(self, device_id: str) -> bool:
        """Whether the device has a live MQTT connection."""
        return device_id in self._live

    @property
    def messages(self) -> tuple[TelemetryMessage, ...]:
        """The telemetry log, oldest first (the last `MESSAGE_LOG_LIMIT` messages)."""
        return tuple(self._messages)

    def drop_connection(self, device_id: str, *, now: float | None = None) -> bool:
        """Close the device's connection as a network failure would (the session stays)."""
        live = self._live.get(device_id)
        self._drop(device_id, self._clock() if now is None else now)
        return live is not None

    def _drop(self, device_id: str, now: float) -> None:
        live = self._live.pop(device_id, None)
        if live is not None:
            live.close()
            self._connection_changed(LifecycleKind.DISCONNECTED, device_id, now)

    # -- lifecycle events -----------------------------------------------------------------------

    def _emit_identity(self, kind: LifecycleKind, device_id: str, now: float) -> None:
        if self._on_event is None:
            return
        view = self.device_view(device_id)
        twin = twin_json(view) if view is not None else None
        self._on_event(
            LifecycleEvent(kind=kind, hub=self.name, device_id=device_id, time=now, twin=twin)
        )

    def _connection_changed(self, kind: LifecycleKind, device_id: str, now: float) -> None:
        self._connection_updated[device_id] = now
        sequence = next_sequence(self._sequences.get(device_id, 0), now)
        self._sequences[device_id] = sequence
        if self._on_event is not None:
            self._on_event(
                LifecycleEvent(
                    kind=kind,
                    hub=self.name,
                    device_id=device_id,
                    time=now,
                    sequence_number=format_sequence(sequence),
                )
            )

    # -- service API operations -----------------------------------------------------------------

    def device_view(self, device_id: str) -> DeviceView | None:
        """The registry entry, twin and connection state together, or None."""
        identity = self._devices.get(device_id)
        twin = self._twins.get(device_id)
        if identity is None or twin is None:
            return None
        session = self._sessions.get(device_id)
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
            connected=device_id in self._live,
            connection_updated=self._connection_updated.get(device_id),
            last_activity=self._last_activity.get(device_id),
            c2d_count=len(session.c2d_queue) if session is not None else 0,
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
        if not enabled:
            self._drop(device_id, now)
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
        if isinstance(desired, dict) and desired:
            self._push_desired(device_id, twin, desired)
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
        self._push_desired(device_id, twin, dict(twin.desired))
        return twin

    def statistics(self) -> RegistryStatistics:
        """Device counts for the statistics endpoints."""
        enabled = sum(1 for identity in self._devices.values() if identity.enabled)
        return RegistryStatistics(
            total=len(self._devices),
            enabled=enabled,
            disabled=len(self._devices) - enabled,
            connected=len(self._live),
        )

    def cancel_method(self, rid: str) -> None:
        """Forget a pending direct method (it timed out); a late answer is then ignored."""
        self._methods.pop(rid, None)

    def _push_desired(self, device_id: str, twin: TwinDocument, patch: dict[str, Any]) -> None:
        self._push(
            device_id,
            _DESIRED,
            f"$iothub/twin/PATCH/properties/desired/?$version={twin.desired_version}",
            _json_bytes(twin.desired_notification(patch)),
        )

    # -- service side ---------------------------------------------------------------------------

    def update_desired(self, device_id: str, patch: object, *, now: float) -> TwinDocument:
        """Patch desired properties (null deletes) and push the patch to a subscribed device."""
        if not isinstance(patch, dict):
            raise TwinError("properties.desired", "a JSON object")
        twin = self._require_twin(device_id).patch_desired(patch, now=now)
        self._twins[device_id] = twin
        self._push_desired(device_id, twin, patch)
        return twin

    def send_c2d(
        self,
        device_id: str,
        body: bytes,
        *,
        message_id: str,
        properties: Mapping[str, str | None] | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
    ) -> None:
        """Send a cloud-to-device message now, or queue it until the device can receive it."""
        self._require_twin(device_id)
        system = [("$.mid", message_id), ("$.to", f"/devices/{device_id}/messages/deviceBound")]
        if content_type is not None:
            system.append(("$.ct", content_type))
        if content_encoding is not None:
            system.append(("$.ce", content_encoding))
        pairs: list[tuple[str, str | None]] = [*system, *(properties or {}).items()]
        topic = f"devices/{device_id}/messages/devicebound/{_encode_bag(pairs)}"
        session = self._sessions.setdefault(device_id, _Session())
        session.c2d_queue.append((topic, body))
        while len(session.c2d_queue) > C2D_QUEUE_LIMIT:
            session.c2d_queue.popleft()
        self._flush_c2d(device_id)

    def invoke_method(
        self,
        device_id: str,
        method_name: str,
        payload: object,
        *,
        on_response: Callable[[MethodResponse], None],
    ) -> str:
        """Send a direct method request; `on_response` gets the device's answer. Returns the rid."""
        self._require_twin(device_id)
        session = self._sessions.get(device_id)
        live = self._live.get(device_id)
        if live is None or session is None or _METHODS not in session.subscriptions:
            raise DeviceNotOnline(f"device {device_id!r} is not online for direct methods")
        rid = format(self._next_rid, "x")
        self._next_rid += 1
        self._methods[rid] = (device_id, on_response)
        topic = f"$iothub/methods/POST/{quote(method_name, safe='')}/?$rid={rid}"
        live.send(topic, _json_bytes(payload))
        return rid

    def _require_twin(self, device_id: str) -> TwinDocument:
        twin = self._twins.get(device_id)
        if twin is None:
            raise DeviceNotFound(f"device {device_id!r} does not exist in hub {self.name}")
        return twin

    def _push(self, device_id: str, subscription: str, topic: str, payload: bytes) -> None:
        session = self._sessions.get(device_id)
        live = self._live.get(device_id)
        if live is not None and session is not None and subscription in session.subscriptions:
            live.send(topic, payload)

    def _flush_c2d(self, device_id: str) -> None:
        session = self._sessions.get(device_id)
        live = self._live.get(device_id)
        if live is None or session is None:
            return
        if f"devices/{device_id}/messages/devicebound/#" not in session.subscriptions:
            return
        while session.c2d_queue:
            live.send(*session.c2d_queue.popleft())

    # -- ports.MqttEndpoint ---------------------------------------------------------------------

    def connect(
        self,
        *,
        client_id: str,
        username: str,
        password: bytes | None,
        send: Send,
        close: Close,
        now: float,
    ) -> int:
        """Authenticate a device CONNECT by SAS; a newer connection replaces an older one."""
        segments = username.split("/")
        device_id = segments[1] if len(segments) > 1 else ""
        identity = self._devices.get(device_id)
        reason = self._refusal(client_id, device_id, identity, password, now)
        if reason is not None:
            log.info("hub refused hub=%s client_id=%s reason=%s", self.name, client_id, reason)
            return CONNACK_NOT_AUTHORIZED
        previous = self._live.pop(device_id, None)
        if previous is not None:
            log.info("hub replaced connection hub=%s device_id=%s", self.name, device_id)
            previous.close()
        self._live[device_id] = _Live(send, close)
        self._last_activity[device_id] = now
        self._connection_changed(LifecycleKind.CONNECTED, device_id, now)
        self._sessions.setdefault(device_id, _Session())
        self._flush_c2d(device_id)
        return CONNACK_ACCEPTED

    def _refusal(
        self,
        client_id: str,
        device_id: str,
        identity: DeviceIdentity | None,
        password: bytes | None,
        now: float,
    ) -> str | None:
        if identity is None:
            return "unknown device"
        if client_id != device_id:
            return "client id differs from the username's device id"
        if not identity.enabled:
            return "device disabled"
        if password is None:
            return "no password"
        try:
            token = parse_sas_token(password.decode("utf-8"))
            verify_sas_token(
                token,
                [identity.primary_key, identity.secondary_key],
                expected_resource=f"{self.name}/devices/{device_id}",
                now=now,
            )
        except UnicodeDecodeError:
            return "password is not UTF-8"
        except SasError as error:
            return type(error).__name__
        return None

    def publish(
        self, *, client_id: str, topic: str, payload: bytes, send: Send, now: float
    ) -> None:
        """Telemetry, twin GET / reported PATCH, and direct method responses."""
        self._last_activity[client_id] = now
        if topic.startswith(f"devices/{client_id}/messages/events/"):
            self._telemetry(client_id, topic, payload, now)
        elif topic.startswith("$iothub/twin/GET/"):
            self._twin_get(client_id, _rid(topic), send)
        elif topic.startswith("$iothub/twin/PATCH/properties/reported/"):
            self._twin_patch(client_id, _rid(topic), payload, send, now)
        elif topic.startswith("$iothub/methods/res/"):
            self._method_response(client_id, topic, payload)
        else:
            log.warning("hub ignored publish hub=%s client_id=%s", self.name, client_id)

    def subscribe(self, *, client_id: str, topic_filter: str) -> bool:
        """Grant the four filters the device SDK uses; refuse anything else."""
        allowed = {_TWIN_RES, _DESIRED, _METHODS, f"devices/{client_id}/messages/devicebound/#"}
        if topic_filter not in allowed:
            return False
        self._sessions.setdefault(client_id, _Session()).subscriptions.add(topic_filter)
        self._flush_c2d(client_id)
        return True

    def unsubscribe(self, *, client_id: str, topic_filter: str) -> None:
        """Forget one subscription of the session."""
        session = self._sessions.get(client_id)
        if session is not None:
            session.subscriptions.discard(topic_filter)

    def disconnect(self, *, client_id: str) -> None:
        """The device's connection ended; its session stays."""
        if self._live.pop(client_id, None) is not None:
            self._connection_changed(LifecycleKind.DISCONNECTED, client_id, self._clock())

    def _telemetry(self, device_id: str, topic: str, payload: bytes, now: float) -> None:
        bag = _decode_bag(topic[len(f"devices/{device_id}/messages/events/") :])
        self.messages_received += 1
        self._messages.append(
            TelemetryMessage(
                device_id=device_id,
                body=payload,
                system_properties={k: v for k, v in bag.items() if k.startswith("$.")},
                properties={k: v for k, v in bag.items() if not k.startswith("$.")},
                enqueued_at=now,
            )
        )

    def _twin_get(self, device_id: str, rid: str, send: Send) -> None:
        twin = self._twins.get(device_id)
        if twin is None:  # deleted while connected
            send(f"$iothub/twin/res/404/?$rid={rid}", b"")
            return
        send(f"$iothub/twin/res/200/?$rid={rid}", _json_bytes(twin.device_view()))

    def _twin_patch(self, device_id: str, rid: str, payload: bytes, send: Send, now: float) -> None:
        twin = self._twins.get(device_id)
        if twin is None:
            send(f"$iothub/twin/res/404/?$rid={rid}", b"")
            return
        try:
            patched = twin.patch_reported(json.loads(payload), now=now)
        except (ValueError, TwinError) as error:
            message = str(error) if isinstance(error, TwinError) else "body: expected JSON"
            send(f"$iothub/twin/res/400/?$rid={rid}", _json_bytes({"message": message}))
            return
        self._twins[device_id] = patched
        send(f"$iothub/twin/res/204/?$rid={rid}&$version={patched.reported_version}", b"")

    def _method_response(self, device_id: str, topic: str, payload: bytes) -> None:
        segments = topic.split("/")
        rid = _rid(topic)
        pending = self._methods.get(rid)
        if pending is None or pending[0] != device_id or len(segments) < 5:
            log.warning("hub ignored method response hub=%s client_id=%s", self.name, device_id)
            return
        del self._methods[rid]
        try:
            status = int(segments[3])
            body = json.loads(payload) if payload.strip() else None
        except ValueError:
            status, body = 500, None
        pending[1](MethodResponse(status, body))


class Hubs:
    """Every configured hub by host name (case-insensitive): the `ports.HubDirectory`."""

    def __init__(
        self,
        names: Sequence[str],
        *,
        clock: Callable[[], float],
        on_event: Callable[[LifecycleEvent], None] | None = None,
    ) -> None:
        self._hubs = {name.lower(): Hub(name, clock=clock, on_event=on_event) for name in names}
        self._clock = clock

    def hub(self, name: str) -> Hub:
        """The hub with this host name; raises UnknownHub."""
        hub = self._hubs.get(name.lower())
        if hub is None:
            raise UnknownHub(f"hub {name!r} is not configured")
        return hub

    def route(self, username: str) -> Hub | None:
        """The hub a device CONNECT username (`{host}/{device}/?...`) addresses, if any."""
        host, _, rest = username.partition("/")
        if not rest or "/registrations/" in username:
            return None
        return self._hubs.get(host.lower())

    def __iter__(self) -> Iterator[Hub]:
        return iter(self._hubs.values())

    # -- ports.HubDirectory ---------------------------------------------------------------------

    def hub_names(self) -> Sequence[str]:
        """Host names of the hubs, as configured."""
        return [hub.name for hub in self._hubs.values()]

    def upsert_device(
        self,
        hub: str,
        device_id: str,
        *,
        primary_key: str,
        secondary_key: str,
        twin: TwinDocument | None,
    ) -> None:
        """Create or update an enabled SAS device in `hub`."""
        self.hub(hub).upsert_device(
            device_id,
            primary_key=primary_key,
            secondary_key=secondary_key,
            twin=twin,
            now=self._clock(),
        )

    def device_twin(self, hub: str, device_id: str) -> TwinDocument | None:
        """The device's twin in `hub`, or None."""
        return self.hub(hub).twin(device_id)

    def delete_device(self, hub: str, device_id: str) -> None:
        """Remove a device from `hub` and drop its connection."""
        self.hub(hub).delete_device(device_id, now=self._clock())


def _generation_id(now: float) -> str:
    """An 18-digit id from the creation time (.NET ticks), as the service's look."""
    return str(int(now * 10_000_000) + 621_355_968_000_000_000)


def _check_etag(if_match: str, current: str, what: str) -> None:
    if if_match not in ("*", current):
        raise PreconditionFailed(f"{what} etag {if_match!r} is not the current etag")


def _rid(topic: str) -> str:
    _, _, query = topic.partition("?")
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key == "$rid":
            return value
    return ""


def _encode_bag(pairs: Sequence[tuple[str, str | None]]) -> str:
    return "&".join(
        quote(key, safe="") if value is None else f"{quote(key, safe='')}={quote(value, safe='')}"
        for key, value in pairs
    )


def _decode_bag(bag: str) -> dict[str, str | None]:
    properties: dict[str, str | None] = {}
    for pair in filter(None, bag.split("&")):
        key, sep, value = pair.partition("=")
        properties[unquote(key)] = unquote(value) if sep else None
    return properties


def _json_bytes(value: object) -> bytes:
    return json.dumps(value).encode("utf-8")
