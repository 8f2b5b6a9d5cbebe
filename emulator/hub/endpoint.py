"""IoT Hub's device side over MQTT: connections, sessions, twin requests, telemetry, C2D, methods.

`Hub` is one emulated IoT hub: its identity registry (`hub.registry.Registry`, which it extends)
and the `endpoints.MqttEndpoint` the MQTT shell routes the hub's connections to. Pure: no sockets,
no clock reads (`now` is an argument; `clock` only for the calls whose protocol carries none).

Protocol (docs/protocol/hub-mqtt.md):
- CONNECT: username `{host}/{deviceId}/?...` (host and device are the first two `/` segments),
  client id = device id, password a SAS token for `{host}/devices/{deviceId}` signed by the
  device's primary or secondary key. Unknown, disabled, wrong key, expired -> CONNACK 5. A
  `model-id` in the username's query (IoT Plug and Play) becomes the twin's `modelId`.
- One connection per device id: a new CONNECT closes the older connection (§1).
- Sessions are kept per client id across connections whatever the CleanSession flag: the SDK
  never re-subscribes after a reconnect (§7). C2D waits in the session while the device is
  offline or not subscribed, up to `C2D_QUEUE_LIMIT` messages (IoT Hub's per-device limit).
- Twin GET is answered whether or not `$iothub/twin/res/#` is subscribed (§5); reported PATCH
  answers 204 with `$version`, or 400 for a patch the twin rules refuse.
- Desired patches are pushed with `$version` to a device subscribed to them; method requests
  only reach a connected device subscribed to `$iothub/methods/POST/#` (else `DeviceNotOnline`).
- Telemetry goes to the hub's message log with its property bag decoded (§3), and to `activity`
  (`hub.telemetry`) when someone listens for it.
- Disabling a device drops its connection and refuses its next CONNECT; a desired change reaches
  a connected, subscribed device as a patch. Connecting and disconnecting are lifecycle events
  (a connection replaced by a newer one gives only a Connected).
- Not emulated: module identities (`{deviceId}/{moduleId}` client ids are refused), X.509 devices.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from allocation.errors import RequestError
from allocation.strict_json import decode
from emulator.endpoints import CONNACK_ACCEPTED, CONNACK_NOT_AUTHORIZED, Close, Send
from emulator.hub.device_events import LifecycleEvent, LifecycleKind, format_sequence, next_sequence
from emulator.hub.messages import (
    MethodResponse,
    TelemetryMessage,
    c2d_topic,
    decode_bag,
    json_bytes,
    request_id,
)
from emulator.hub.registry import DeviceIdentity, DeviceNotOnline, Registry
from emulator.hub.twin import TwinDocument, TwinError
from emulator.hub.views import ConnectionState
from sas import SasError, parse_sas_token, verify_sas_token

__all__ = ["C2D_QUEUE_LIMIT", "MESSAGE_LOG_LIMIT", "Hub"]

log = logging.getLogger(__name__)

C2D_QUEUE_LIMIT = 50
MESSAGE_LOG_LIMIT = 10_000  # telemetry kept per hub for tests and `tail`; older lines fall off

_TWIN_RES = "$iothub/twin/res/#"
_DESIRED = "$iothub/twin/PATCH/properties/desired/#"
_METHODS = "$iothub/methods/POST/#"


@dataclass
class _Session:
    """What survives a reconnect, per client id."""

    subscriptions: set[str] = field(default_factory=set)
    c2d_queue: deque[tuple[str, bytes]] = field(default_factory=deque)


@dataclass(frozen=True)
class _Live:
    send: Send
    close: Close


class Hub(Registry):
    """One emulated IoT hub: its registry, and the MQTT endpoint its devices connect to."""

    def __init__(
        self,
        name: str,
        *,
        clock: Callable[[], float] = lambda: 0.0,
        on_event: Callable[[LifecycleEvent], None] | None = None,
    ) -> None:
        super().__init__(name, clock=clock, on_event=on_event)
        self._sequences: dict[str, int] = {}
        self._connection_updated: dict[str, float] = {}
        self._last_activity: dict[str, float] = {}
        self._sessions: dict[str, _Session] = {}
        self._live: dict[str, _Live] = {}
        self._methods: dict[str, tuple[str, Callable[[MethodResponse], None]]] = {}
        self._next_rid = 1
        self._messages: deque[TelemetryMessage] = deque(maxlen=MESSAGE_LOG_LIMIT)
        self.messages_received = 0  # every telemetry message since start, to page the log

    # -- connections ---------------------------------------------------------------------------

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

    def cancel_method(self, rid: str) -> None:
        """Forget a pending direct method (it timed out); a late answer is then ignored."""
        self._methods.pop(rid, None)

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
        topic = c2d_topic(
            device_id,
            message_id=message_id,
            properties=properties,
            content_type=content_type,
            content_encoding=content_encoding,
        )
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
        live.send(topic, json_bytes(payload))
        return rid

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

    def _desired_changed(self, device_id: str, twin: TwinDocument, patch: dict[str, Any]) -> None:
        self._push(
            device_id,
            _DESIRED,
            f"$iothub/twin/PATCH/properties/desired/?$version={twin.desired_version}",
            json_bytes(twin.desired_notification(patch)),
        )

    # -- what the registry asks of the endpoint ------------------------------------------------

    def _connection_state(self, device_id: str) -> ConnectionState:
        session = self._sessions.get(device_id)
        return ConnectionState(
            connected=device_id in self._live,
            updated=self._connection_updated.get(device_id),
            last_activity=self._last_activity.get(device_id),
            c2d_count=len(session.c2d_queue) if session is not None else 0,
        )

    def _identity_disabled(self, device_id: str, now: float) -> None:
        self._drop(device_id, now)

    def _identity_deleted(self, device_id: str, now: float) -> None:
        self._sessions.pop(device_id, None)
        self._drop(device_id, now)

    # -- endpoints.MqttEndpoint ----------------------------------------------------------------

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
        self.announce_model(device_id, _announced_model(username))
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
    ) -> bool:
        """Telemetry, twin GET / reported PATCH, and direct method responses; any other topic
        (another device's, an unknown one) is refused, and IoT Hub closes the connection."""
        self._last_activity[client_id] = now
        if topic.startswith(f"devices/{client_id}/messages/events/"):
            self._telemetry(client_id, topic, payload, now)
        elif topic.startswith("$iothub/twin/GET/"):
            self._twin_get(client_id, request_id(topic), send)
        elif topic.startswith("$iothub/twin/PATCH/properties/reported/"):
            self._twin_patch(client_id, request_id(topic), payload, send, now)
        elif topic.startswith("$iothub/methods/res/"):
            self._method_response(client_id, topic, payload)
        else:
            log.warning(
                "hub refused a publish to a topic the device may not use; closing hub=%s "
                "client_id=%s",
                self.name,
                client_id,
            )
            return False
        return True

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
        bag = decode_bag(topic[len(f"devices/{device_id}/messages/events/") :])
        self.messages_received += 1
        message = TelemetryMessage(
            device_id=device_id,
            body=payload,
            system_properties={k: v for k, v in bag.items() if k.startswith("$.")},
            properties={k: v for k, v in bag.items() if not k.startswith("$.")},
            enqueued_at=now,
        )
        self._messages.append(message)
        if self.activity is not None and self.activity.wanted("hub.telemetry"):
            self.activity.publish(
                "hub.telemetry", now, hub=self.name, seq=self.messages_received, message=message
            )

    def _twin_get(self, device_id: str, rid: str, send: Send) -> None:
        twin = self._twins.get(device_id)
        if twin is None:  # deleted while connected
            send(f"$iothub/twin/res/404/?$rid={rid}", b"")
            return
        send(f"$iothub/twin/res/200/?$rid={rid}", json_bytes(twin.device_view()))

    def _twin_patch(self, device_id: str, rid: str, payload: bytes, send: Send, now: float) -> None:
        twin = self._twins.get(device_id)
        if twin is None:
            send(f"$iothub/twin/res/404/?$rid={rid}", b"")
            return
        try:
            patched = twin.patch_reported(decode(payload, field="reported"), now=now)
        except (RequestError, TwinError) as error:
            message = str(error)
            send(f"$iothub/twin/res/400/?$rid={rid}", json_bytes({"message": message}))
            return
        self._twins[device_id] = patched
        self._changed(device_id)
        send(f"$iothub/twin/res/204/?$rid={rid}&$version={patched.reported_version}", b"")

    def _method_response(self, device_id: str, topic: str, payload: bytes) -> None:
        segments = topic.split("/")
        rid = request_id(topic)
        pending = self._methods.get(rid)
        if pending is None or pending[0] != device_id or len(segments) < 5:
            log.warning("hub ignored method response hub=%s client_id=%s", self.name, device_id)
            return
        del self._methods[rid]
        try:
            status = int(segments[3])
            body = decode(payload, field="payload") if payload.strip() else None
        except (ValueError, RequestError):
            status, body = 500, None
        pending[1](MethodResponse(status, body))

    # -- what the HTTPS device API asks of the hub (https.hub_api) -----------------------------

    def refusal(self, device_id: str, password: bytes | None, now: float) -> str | None:
        """Why a device's SAS token does not let it in (None: it does), as for a CONNECT."""
        return self._refusal(device_id, device_id, self._devices.get(device_id), password, now)

    def take_c2d(self, device_id: str) -> tuple[str, bytes] | None:
        """The oldest queued cloud-to-device message (topic, body), out of the queue."""
        session = self._sessions.get(device_id)
        if session is None or not session.c2d_queue:
            return None
        return session.c2d_queue.popleft()

    def return_c2d(self, device_id: str, topic: str, body: bytes) -> None:
        """Put a taken message back at the head of the queue (abandoned, or its lock expired)."""
        if device_id not in self._twins:
            return  # deleted meanwhile: the message went with the device
        self._sessions.setdefault(device_id, _Session()).c2d_queue.appendleft((topic, body))
        self._flush_c2d(device_id)


def _announced_model(username: str) -> str | None:
    """The IoT Plug and Play `model-id` of a CONNECT username's query, decoded; None without."""
    for pair in username.partition("?")[2].split("&"):
        name, _, value = pair.partition("=")
        if name == "model-id" and value:
            return unquote(value)
    return None
