"""IoT Hub's device side over MQTT: connections, sessions, twin requests, telemetry, C2D, methods.

`Hub` is one emulated IoT hub: its identity registry (`hub.registry.Registry`, which it extends)
and the `endpoints.MqttEndpoint` the MQTT shell routes the hub's connections to. Pure: no sockets,
no clock reads (`now` is an argument; `clock` only for the calls whose protocol carries none).

Protocol (docs/protocol/hub-mqtt.md; §12 has the sources of what IoT Hub does):
- CONNECT: username `{host}/{deviceId}/?...` (host and device are the first two `/` segments),
  client id = device id, password a SAS token for `{host}/devices/{deviceId}` signed by the
  device's primary or secondary key. Unknown, disabled, wrong key, expired -> CONNACK 5. A
  `model-id` in the username's query (IoT Plug and Play) becomes the twin's `modelId`.
- One connection per device id: a new CONNECT closes the older connection (§1).
- Sessions (the subscriptions and their granted QoS) are kept per client id: a CleanSession 0
  connect resumes the session (CONNACK Session Present 1 when there was one; the SDKs never
  re-subscribe, §7); a CleanSession 1 connect starts an empty one, discarded when it ends.
- Subscriptions granted: `$iothub/twin/res/#`, `$iothub/twin/PATCH/properties/desired/#`,
  `$iothub/methods/POST/#`, and for C2D `devices/{deviceId}/messages/devicebound/#` or
  `devices/+/messages/devicebound/#` (what azure-sdk-for-c and the RTOS clients send; only the
  connection's own messages match it). Anything else -> SUBACK 0x80.
- What the hub publishes reaches only a matching subscription: twin responses need
  `$iothub/twin/res/#` (else they are dropped, as IoT Hub does), desired patches the desired
  filter, method requests the methods filter, C2D a C2D filter. Twin responses, desired patches
  and method requests go out at QoS 0; C2D at the QoS its subscription was granted.
- C2D messages wait in the device's queue (`c2d.C2dQueue`: 50 at most, expiry, order), which is
  not part of the MQTT session: they leave it when the device PUBACKs them (QoS 1) or as they are
  sent (QoS 0), so a connection that drops first gets them again on the next connection.
- Twin GET answers 200 with desired and reported; reported PATCH answers 204 with `$version`, or
  400 for a patch the twin rules refuse.
- Method requests reach only a connected device subscribed to `$iothub/methods/POST/#` (else
  `DeviceNotOnline`); `when_methods_ready` tells a waiting caller (`connectTimeoutInSeconds`).
- Telemetry goes to the hub's message log with its property bag decoded (§3), and to `activity`
  (`hub.telemetry`) when someone listens for it.
- Disabling a device drops its connection and refuses its next CONNECT; a desired change reaches
  a connected, subscribed device as a patch.
- Connection events: a device counts as connected for DeviceConnected / DeviceDisconnected only
  once its connection subscribes to C2D or sends telemetry (or resumes a session that holds a C2D
  subscription); changes of that state go through `presence.PresenceReporter` (60 s snapshots by
  default, or at once), `report_connections(now)` emitting what is due.
- Not emulated: module identities (`{deviceId}/{moduleId}` client ids are refused), X.509 devices,
  the limit of five subscriptions per device.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import quote, unquote

from allocation.errors import RequestError
from allocation.strict_json import decode
from emulator.endpoints import (
    CONNACK_ACCEPTED,
    CONNACK_NOT_AUTHORIZED,
    Close,
    ConnectAnswer,
    Send,
)
from emulator.hub.c2d import DEFAULT_TTL, AckMode, C2dQueue, CloudMessage
from emulator.hub.device_events import LifecycleEvent, LifecycleKind, format_sequence, next_sequence
from emulator.hub.messages import (
    MethodResponse,
    TelemetryMessage,
    decode_bag,
    json_bytes,
    request_id,
)
from emulator.hub.presence import PresencePolicy, PresenceReporter
from emulator.hub.registry import DeviceIdentity, DeviceNotOnline, Registry
from emulator.hub.twin import TwinDocument, TwinError
from emulator.hub.views import ConnectionState
from sas import SasError, parse_sas_token, verify_sas_token

__all__ = ["MESSAGE_LOG_LIMIT", "Hub", "c2d_filters"]

log = logging.getLogger(__name__)

MESSAGE_LOG_LIMIT = 10_000  # telemetry kept per hub for tests and `tail`; older lines fall off

_TWIN_RES = "$iothub/twin/res/#"
_DESIRED = "$iothub/twin/PATCH/properties/desired/#"
_METHODS = "$iothub/methods/POST/#"
_ANY_DEVICE_C2D = "devices/+/messages/devicebound/#"


def c2d_filters(device_id: str) -> tuple[str, str]:
    """The two C2D topic filters a device may subscribe to."""
    return (f"devices/{device_id}/messages/devicebound/#", _ANY_DEVICE_C2D)


@dataclass
class _Session:
    """The MQTT session of one client id: its subscriptions and the QoS each was granted."""

    subscriptions: dict[str, int] = field(default_factory=dict)


@dataclass(eq=False)
class _Live:
    """One live connection."""

    send: Send
    close: Close
    clean: bool  # CleanSession 1: its session ends with it
    active: bool = False  # subscribed to C2D or sent telemetry: IoT Hub reports it connected


class Hub(Registry):
    """One emulated IoT hub: its registry, and the MQTT endpoint its devices connect to."""

    def __init__(
        self,
        name: str,
        *,
        clock: Callable[[], float] = lambda: 0.0,
        on_event: Callable[[LifecycleEvent], None] | None = None,
        presence: PresencePolicy | None = None,
    ) -> None:
        super().__init__(name, clock=clock, on_event=on_event)
        self._sequences: dict[str, int] = {}
        self._connection_updated: dict[str, float] = {}
        self._last_activity: dict[str, float] = {}
        self._sessions: dict[str, _Session] = {}
        self._queues: dict[str, C2dQueue] = {}
        self._live: dict[str, _Live] = {}
        self._methods: dict[str, tuple[str, Callable[[MethodResponse], None]]] = {}
        self._method_waiters: dict[str, list[Callable[[], None]]] = {}
        self._presence = PresenceReporter(presence or PresencePolicy())
        self._next_rid = 1
        self._messages: deque[TelemetryMessage] = deque(maxlen=MESSAGE_LOG_LIMIT)
        self.messages_received = 0  # every telemetry message since start, to page the log

    # -- connections ---------------------------------------------------------------------------

    def subscriptions(self, device_id: str) -> set[str]:
        """The topic filters the device's session holds (kept across CleanSession 0 connections)."""
        session = self._sessions.get(device_id)
        return set(session.subscriptions) if session is not None else set()

    def is_connected(self, device_id: str) -> bool:
        """Whether the device has a live MQTT connection."""
        return device_id in self._live

    def c2d_queue(self, device_id: str) -> tuple[CloudMessage, ...]:
        """The device's queued C2D messages, oldest first (those sent but not acknowledged too)."""
        queue = self._queues.get(device_id)
        return tuple(queue) if queue is not None else ()

    @property
    def messages(self) -> tuple[TelemetryMessage, ...]:
        """The telemetry log, oldest first (the last `MESSAGE_LOG_LIMIT` messages)."""
        return tuple(self._messages)

    @property
    def presence(self) -> PresencePolicy:
        """How this hub reports connection state changes."""
        return self._presence.policy

    def drop_connection(self, device_id: str, *, now: float | None = None) -> bool:
        """Close the device's connection as a network failure would (the session stays)."""
        live = self._live.get(device_id)
        self._drop(device_id, self._clock() if now is None else now)
        return live is not None

    def _drop(self, device_id: str, now: float) -> None:
        live = self._live.get(device_id)
        if live is not None:
            live.close()
            self._ended(device_id, live, now)

    def _ended(self, device_id: str, live: _Live, now: float) -> None:
        """`live` is over: forget it, and a CleanSession 1 session with it."""
        if self._live.get(device_id) is live:
            del self._live[device_id]
        self._connection_updated[device_id] = now
        if live.clean:
            self._sessions.pop(device_id, None)
        if live.active:
            self._observe(device_id, connected=False, now=now)

    def _activate(self, device_id: str, now: float) -> None:
        """The live connection subscribed to C2D or sent telemetry: IoT Hub reports it now."""
        live = self._live.get(device_id)
        if live is not None and not live.active:
            live.active = True
            self._observe(device_id, connected=True, now=now)

    def _observe(self, device_id: str, *, connected: bool, now: float) -> None:
        for changed, state in self._presence.observe(device_id, connected, now):
            self._emit_connection(changed, state, now)

    def report_connections(self, now: float) -> int:
        """Emit the connection snapshot due at `now` (see `presence`); how many events. The
        events carry the moment the snapshot was taken (the window's end), however late the
        caller looks."""
        taken = self._presence.next_due()
        report = self._presence.due(now)
        for device_id, connected in report:
            self._emit_connection(device_id, connected, now if taken is None else taken)
        return len(report)

    def _emit_connection(self, device_id: str, connected: bool, now: float) -> None:
        kind = LifecycleKind.CONNECTED if connected else LifecycleKind.DISCONNECTED
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

    # -- direct methods ------------------------------------------------------------------------

    def methods_ready(self, device_id: str) -> bool:
        """Whether a method request would reach the device now: connected and subscribed."""
        session = self._sessions.get(device_id)
        return device_id in self._live and session is not None and _METHODS in session.subscriptions

    def when_methods_ready(
        self, device_id: str, callback: Callable[[], None]
    ) -> Callable[[], None]:
        """Call `callback` once when the device becomes `methods_ready` (now, if it is); returns
        a function that cancels the wait."""
        if self.methods_ready(device_id):
            callback()
            return lambda: None
        waiters = self._method_waiters.setdefault(device_id, [])
        waiters.append(callback)

        def cancel() -> None:
            if callback in waiters:
                waiters.remove(callback)
            if not waiters and self._method_waiters.get(device_id) is waiters:
                del self._method_waiters[device_id]

        return cancel

    def _methods_maybe_ready(self, device_id: str) -> None:
        if self.methods_ready(device_id):
            for callback in self._method_waiters.pop(device_id, []):
                callback()

    def cancel_method(self, rid: str) -> None:
        """Forget a pending direct method (it timed out); a late answer is then ignored."""
        self._methods.pop(rid, None)

    def invoke_method(
        self,
        device_id: str,
        method_name: str,
        payload: object,
        *,
        on_response: Callable[[MethodResponse], None],
    ) -> str:
        """Send a direct method request (QoS 0); `on_response` gets the device's answer.
        Returns the rid."""
        self._require_twin(device_id)
        live = self._live.get(device_id)
        if live is None or not self.methods_ready(device_id):
            raise DeviceNotOnline(f"device {device_id!r} is not online for direct methods")
        rid = format(self._next_rid, "x")
        self._next_rid += 1
        self._methods[rid] = (device_id, on_response)
        topic = f"$iothub/methods/POST/{quote(method_name, safe='')}/?$rid={rid}"
        live.send(topic, json_bytes(payload), qos=0)
        return rid

    # -- cloud-to-device messages --------------------------------------------------------------

    def send_c2d(
        self,
        device_id: str,
        body: bytes,
        *,
        message_id: str,
        properties: Mapping[str, str | None] | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
        correlation_id: str | None = None,
        expiry: float | None = None,
        ack: AckMode = AckMode.NONE,
        now: float | None = None,
    ) -> CloudMessage:
        """Queue a cloud-to-device message and send it if the device can receive it now.

        `expiry` is an absolute time (seconds since the epoch); without one the message expires
        `DEFAULT_TTL` after now. Raises DeviceNotFound, or DeviceMaximumQueueDepthExceeded when
        50 messages wait.
        """
        self._require_twin(device_id)
        when = self._clock() if now is None else now
        message = CloudMessage(
            message_id=message_id,
            body=body,
            expiry=when + DEFAULT_TTL if expiry is None else expiry,
            expiry_set=expiry is not None,
            properties=dict(properties or {}),
            correlation_id=correlation_id,
            content_type=content_type,
            content_encoding=content_encoding,
            ack=ack,
        )
        self._queues.setdefault(device_id, C2dQueue()).add(message, when)
        self._flush_c2d(device_id, when)
        return message

    def receives_c2d(self, device_id: str) -> bool:
        """Whether a C2D message would go out now: connected, and subscribed to C2D."""
        return device_id in self._live and self._c2d_qos(device_id) is not None

    def _c2d_qos(self, device_id: str) -> int | None:
        """The QoS C2D goes out at to this device's session, or None when not subscribed."""
        session = self._sessions.get(device_id)
        if session is None:
            return None
        granted = [
            session.subscriptions[f] for f in c2d_filters(device_id) if f in session.subscriptions
        ]
        return max(granted) if granted else None

    def _flush_c2d(self, device_id: str, now: float) -> None:
        live = self._live.get(device_id)
        queue = self._queues.get(device_id)
        qos = self._c2d_qos(device_id)
        if live is None or queue is None or qos is None:
            return
        for message, token in queue.take_unsent(live, now):
            if qos == 0:
                queue.complete(token)
                live.send(message.topic(device_id), message.body, qos=0)
            else:
                live.send(
                    message.topic(device_id),
                    message.body,
                    qos=1,
                    on_acknowledged=partial(self._c2d_acknowledged, queue, token),
                )

    @staticmethod
    def _c2d_acknowledged(queue: C2dQueue, token: object) -> None:
        queue.complete(token)

    def _push(self, device_id: str, subscription: str, topic: str, payload: bytes) -> None:
        session = self._sessions.get(device_id)
        live = self._live.get(device_id)
        if live is not None and session is not None and subscription in session.subscriptions:
            live.send(topic, payload, qos=0)

    def _desired_changed(self, device_id: str, twin: TwinDocument, patch: dict[str, Any]) -> None:
        self._push(
            device_id,
            _DESIRED,
            f"$iothub/twin/PATCH/properties/desired/?$version={twin.desired_version}",
            json_bytes(twin.desired_notification(patch)),
        )

    # -- what the registry asks of the endpoint ------------------------------------------------

    def _connection_state(self, device_id: str) -> ConnectionState:
        queue = self._queues.get(device_id)
        return ConnectionState(
            connected=device_id in self._live,
            updated=self._connection_updated.get(device_id),
            last_activity=self._last_activity.get(device_id),
            c2d_count=queue.count(self._clock()) if queue is not None else 0,
        )

    def _identity_disabled(self, device_id: str, now: float) -> None:
        self._drop(device_id, now)

    def _identity_deleted(self, device_id: str, now: float) -> None:
        self._drop(device_id, now)
        self._sessions.pop(device_id, None)
        self._queues.pop(device_id, None)
        self._method_waiters.pop(device_id, None)

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
        clean_session: bool = True,
    ) -> int | ConnectAnswer:
        """Authenticate a device CONNECT by SAS; a newer connection replaces an older one, and
        the session is resumed (CleanSession 0) or started afresh (CleanSession 1)."""
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
            previous.close()  # the shell does not call `disconnect` for it
            if previous.clean:
                self._sessions.pop(device_id, None)
        if clean_session:
            self._sessions.pop(device_id, None)
        present = device_id in self._sessions
        self._sessions.setdefault(device_id, _Session())
        self.announce_model(device_id, _announced_model(username))
        live = _Live(send, close, clean=clean_session)
        live.active = self._c2d_qos(device_id) is not None  # a resumed C2D subscription
        self._live[device_id] = live
        self._last_activity[device_id] = now
        self._connection_updated[device_id] = now
        if live.active:
            self._observe(device_id, connected=True, now=now)
        elif previous is not None and previous.active:
            self._observe(device_id, connected=False, now=now)
        self._flush_c2d(device_id, now)
        self._methods_maybe_ready(device_id)
        return ConnectAnswer(CONNACK_ACCEPTED, session_present=present)

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
            self._activate(client_id, now)
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

    def subscribe(self, *, client_id: str, topic_filter: str, qos: int = 1) -> bool:
        """Grant the twin, desired, methods and C2D filters at `qos`; refuse anything else."""
        c2d = c2d_filters(client_id)
        if topic_filter not in (_TWIN_RES, _DESIRED, _METHODS, *c2d):
            return False
        now = self._clock()
        self._sessions.setdefault(client_id, _Session()).subscriptions[topic_filter] = qos
        if topic_filter in c2d:
            self._activate(client_id, now)
            self._flush_c2d(client_id, now)
        elif topic_filter == _METHODS:
            self._methods_maybe_ready(client_id)
        return True

    def unsubscribe(self, *, client_id: str, topic_filter: str) -> None:
        """Forget one subscription of the session."""
        session = self._sessions.get(client_id)
        if session is not None:
            session.subscriptions.pop(topic_filter, None)

    def disconnect(self, *, client_id: str) -> None:
        """The device's connection ended; a CleanSession 0 session stays."""
        live = self._live.get(client_id)
        if live is not None:
            self._ended(client_id, live, self._clock())

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

    def _twin_response(self, device_id: str, send: Send, topic: str, body: bytes) -> None:
        """A twin response, at QoS 0, to a session subscribed to `$iothub/twin/res/#` only."""
        session = self._sessions.get(device_id)
        if session is None or _TWIN_RES not in session.subscriptions:
            log.info(
                "hub dropped a twin response: no %s subscription hub=%s client_id=%s",
                _TWIN_RES,
                self.name,
                device_id,
            )
            return
        send(topic, body, qos=0)

    def _twin_get(self, device_id: str, rid: str, send: Send) -> None:
        twin = self._twins.get(device_id)
        if twin is None:  # deleted while connected
            self._twin_response(device_id, send, f"$iothub/twin/res/404/?$rid={rid}", b"")
            return
        body = json_bytes(twin.device_view())
        self._twin_response(device_id, send, f"$iothub/twin/res/200/?$rid={rid}", body)

    def _twin_patch(self, device_id: str, rid: str, payload: bytes, send: Send, now: float) -> None:
        twin = self._twins.get(device_id)
        if twin is None:
            self._twin_response(device_id, send, f"$iothub/twin/res/404/?$rid={rid}", b"")
            return
        try:
            patched = twin.patch_reported(decode(payload, field="reported"), now=now)
        except (RequestError, TwinError) as error:
            body = json_bytes({"message": str(error)})
            self._twin_response(device_id, send, f"$iothub/twin/res/400/?$rid={rid}", body)
            return
        self._twins[device_id] = patched
        self._changed(device_id)
        topic = f"$iothub/twin/res/204/?$rid={rid}&$version={patched.reported_version}"
        self._twin_response(device_id, send, topic, b"")

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

    def take_c2d(
        self, device_id: str, holder: object, now: float
    ) -> tuple[str, bytes, object] | None:
        """The oldest C2D message not sent anywhere (topic, body, token), locked for `holder`
        until `complete_c2d` or `return_c2d`; None when none waits."""
        queue = self._queues.get(device_id)
        taken = (
            queue.lock(holder, now, live=self._live.get(device_id)) if queue is not None else None
        )
        if taken is None:
            return None
        message, token = taken
        return message.topic(device_id), message.body, token

    def complete_c2d(self, device_id: str, token: object) -> bool:
        """A locked message is done with (completed or rejected): it leaves the queue."""
        queue = self._queues.get(device_id)
        return queue is not None and queue.complete(token)

    def return_c2d(self, device_id: str, token: object, now: float) -> None:
        """A locked message waits again (abandoned, or its lock expired), first in line."""
        queue = self._queues.get(device_id)
        if queue is not None and queue.release(token):
            self._flush_c2d(device_id, now)


def _announced_model(username: str) -> str | None:
    """The IoT Plug and Play `model-id` of a CONNECT username's query, decoded; None without."""
    for pair in username.partition("?")[2].split("&"):
        name, _, value = pair.partition("=")
        if name == "model-id" and value:
            return unquote(value)
    return None
