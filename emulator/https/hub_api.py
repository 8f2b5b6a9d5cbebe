"""IoT Hub's HTTPS device API: telemetry in, cloud-to-device messages out, as the Node SDK's HTTP
transport (azure-iot-device-http) sends them (docs/protocol/transports.md §4).

    POST   /devices/{id}/messages/events?api-version=...                      -> 204
    GET    /devices/{id}/messages/devicebound?api-version=...                 -> 200 + message, or 204
    DELETE /devices/{id}/messages/devicebound/{lockToken}?api-version=...     -> 204 (complete)
    DELETE /devices/{id}/messages/devicebound/{lockToken}?api-version=...&reject -> 204 (reject)
    POST   /devices/{id}/messages/devicebound/{lockToken}/abandon?api-version=... -> 204

`Authorization: SharedAccessSignature sr={hub}%2Fdevices%2F{id}&sig=...&se=...`, checked as the
hub checks a CONNECT's password (`Hub.refusal`). The requests become the hub's own device
operations, so nothing here keeps a second copy of what the hub decides:

- telemetry: the headers become the property bag of an MQTT telemetry topic and go to
  `Hub.publish`, as if sent over MQTT: `iothub-app-{name}` is an application property `{name}`,
  `iothub-messageid` / `-correlationid` / `-userid` / `-to` / `-contenttype` /
  `-contentencoding` / `-expiry` are `$.mid` / `$.cid` / `$.uid` / `$.to` / `$.ct` / `$.ce` /
  `$.exp` (HTTP header names arrive in lower case, so property names do too);
- receive takes the oldest queued C2D message out of the hub's queue and locks it for
  `LOCK_SECONDS` under a fresh lock token (the `ETag`, quoted); complete and reject drop it,
  abandon and an expired lock put it back at the head of the queue. The message's properties come
  back as the same headers; a value an HTTP header cannot carry is percent-encoded.

Errors are IoT Hub's (`service.api.error_response`): 400 InvalidProtocolVersion without
`api-version`, 401 IotHubUnauthorizedAccess, 404 for a path the hub does not serve (modules, twin
and methods over HTTPS are not emulated), 405 for another method, 412 DeviceMessageLockLost for a
lock token that is not (or no longer) held.

Pure: no I/O, no clock (`now` is an argument); lock tokens come from the injected `entropy`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote

from emulator.hub.directory import Hubs
from emulator.hub.endpoint import Hub
from emulator.hub.messages import decode_bag, encode_bag
from emulator.hub.registry import UnknownHub
from emulator.service.api import Request, ServiceResponse, error_response

__all__ = ["LOCK_SECONDS", "HubHttpApi", "hub_of_token"]

LOCK_SECONDS = 60.0  # IoT Hub's C2D lock ("visibility") timeout over HTTPS (transports.md §4)

# Header <-> property bag name, for the system properties IoT Hub carries in `iothub-*` headers.
SYSTEM_HEADERS = {
    "iothub-messageid": "$.mid",
    "iothub-correlationid": "$.cid",
    "iothub-userid": "$.uid",
    "iothub-to": "$.to",
    "iothub-contenttype": "$.ct",
    "iothub-contentencoding": "$.ce",
    "iothub-expiry": "$.exp",
}
APP_PREFIX = "iothub-app-"
_HEADER_NAME_SAFE = "!#$%&'*+-.^_`|~"


@dataclass(frozen=True)
class _Lock:
    held: object  # the hub's token for the locked message
    expires: float


def hub_of_token(authorization: str | None) -> str | None:
    """The hub a device's SAS token names (the host part of `sr`), for a request whose `Host`
    header does not name one (a client sent to the emulator's address)."""
    if not authorization:
        return None
    for field in authorization.removeprefix("SharedAccessSignature ").split("&"):
        name, _, value = field.partition("=")
        if name.strip() == "sr":
            host = unquote(value).partition("/")[0]
            return host.lower() or None
    return None


class HubHttpApi:
    """The device-facing HTTPS API of every hub, and the C2D messages it has locked."""

    def __init__(self, hubs: Hubs, *, entropy: Callable[[int], bytes] = os.urandom) -> None:
        self._hubs = hubs
        self._entropy = entropy
        self._locks: dict[tuple[str, str], dict[str, _Lock]] = {}
        self._tracking = 0

    def handle(self, request: Request, hub_name: str, *, now: float) -> ServiceResponse:
        """Answer one request for the hub `hub_name`."""
        try:
            hub = self._hubs.hub(hub_name)
        except UnknownHub:
            return self._error(404, "IotHubNotFound", "no such IoT hub", now)
        path, _, query = request.target.partition("?")
        segments = [unquote(segment) for segment in path.split("/")[1:]]
        if len(segments) < 4 or segments[0] != "devices" or segments[2] != "messages":
            return self._error(404, "ResourceNotFound", "not served over HTTPS here", now)
        device_id, rest = segments[1], segments[3:]
        params = parse_qs(query, keep_blank_values=True)
        route = _route(rest, request.method)
        if route is None:
            return self._error(404, "ResourceNotFound", "not served over HTTPS here", now)
        if route == "method":
            return self._error(405, "MethodNotAllowed", f"{request.method} is not allowed", now)
        if not params.get("api-version"):
            return self._error(400, "InvalidProtocolVersion", "api-version is missing", now)
        authorization = request.headers.get("authorization")
        token = authorization.encode("utf-8") if authorization is not None else None
        if not device_id or hub.refusal(device_id, token, now) is not None:
            return self._error(401, "IotHubUnauthorizedAccess", "Unauthorized", now)
        if route == "events":
            return self._telemetry(hub, device_id, request, now)
        if route == "receive":
            return self._receive(hub, device_id, now)
        if not self._settle(hub, device_id, rest[1], abandon=route == "abandon", now=now):
            return self._error(
                412, "DeviceMessageLockLost", "the message's lock is not held (expired?)", now
            )
        return ServiceResponse(status=204)

    def _telemetry(self, hub: Hub, device_id: str, request: Request, now: float) -> ServiceResponse:
        pairs = _bag_from_headers(request.headers)
        topic = f"devices/{device_id}/messages/events/{encode_bag(pairs)}"
        accepted = hub.publish(
            client_id=device_id, topic=topic, payload=request.body, send=_no_reply, now=now
        )
        if not accepted:
            return self._error(400, "ArgumentInvalid", "the hub refused the message", now)
        return ServiceResponse(status=204)

    def _receive(self, hub: Hub, device_id: str, now: float) -> ServiceResponse:
        self._expire(hub, device_id, now)
        token = str(uuid.UUID(bytes=self._entropy(16)))
        taken = hub.take_c2d(device_id, token, now)
        if taken is None:
            return ServiceResponse(status=204)
        topic, body, held = taken
        self._locks.setdefault((hub.name, device_id), {})[token] = _Lock(held, now + LOCK_SECONDS)
        headers = [("ETag", f'"{token}"'), *_headers_from_bag(topic)]
        return ServiceResponse(status=200, headers=tuple(headers), body=body)

    def _settle(self, hub: Hub, device_id: str, token: str, *, abandon: bool, now: float) -> bool:
        self._expire(hub, device_id, now)
        locks = self._locks.get((hub.name, device_id), {})
        lock = locks.pop(token.strip('"'), None)
        if not locks:
            self._locks.pop((hub.name, device_id), None)
        if lock is None:
            return False
        if abandon:
            hub.return_c2d(device_id, lock.held, now)
            return True
        return hub.complete_c2d(device_id, lock.held)

    def _expire(self, hub: Hub, device_id: str, now: float) -> None:
        """Put messages whose lock ran out back in the queue, oldest lock first."""
        locks = self._locks.get((hub.name, device_id))
        if not locks:
            return
        expired = [token for token, lock in locks.items() if lock.expires <= now]
        for token in expired:  # each waits again in its place in the queue
            lock = locks.pop(token)
            hub.return_c2d(device_id, lock.held, now)
        if not locks:
            del self._locks[(hub.name, device_id)]

    def _error(self, status: int, code: str, message: str, now: float) -> ServiceResponse:
        self._tracking += 1
        return error_response(status, code, message, now=now, tracking=f"{self._tracking:032x}")


def _route(rest: list[str], method: str) -> str | None:
    """What `/devices/{id}/messages/...` asks: events, receive, complete, abandon; "method" when
    the path is known but not with this method; None when it is not known."""
    allowed: tuple[str, str] | None = None
    if rest == ["events"]:
        allowed = ("POST", "events")
    elif rest == ["devicebound"]:
        allowed = ("GET", "receive")
    elif len(rest) == 2 and rest[0] == "devicebound" and rest[1]:
        allowed = ("DELETE", "complete")
    elif len(rest) == 3 and rest[0] == "devicebound" and rest[1] and rest[2] == "abandon":
        allowed = ("POST", "abandon")
    if allowed is None:
        return None
    return allowed[1] if method == allowed[0] else "method"


def _bag_from_headers(headers: Mapping[str, str]) -> list[tuple[str, str | None]]:
    system = [
        (SYSTEM_HEADERS[name], value) for name, value in headers.items() if name in SYSTEM_HEADERS
    ]
    application = [
        (name[len(APP_PREFIX) :], value)
        for name, value in headers.items()
        if name.startswith(APP_PREFIX) and len(name) > len(APP_PREFIX)
    ]
    return [*system, *application]


def _headers_from_bag(topic: str) -> list[tuple[str, str]]:
    bag = decode_bag(topic.partition("/messages/devicebound/")[2])
    by_property = {prop: header for header, prop in SYSTEM_HEADERS.items()}
    headers = []
    for name, value in bag.items():
        header = by_property.get(name)
        if header is None:
            if name.startswith("$."):
                continue  # a system property with no HTTP header
            header = APP_PREFIX + quote(name, safe=_HEADER_NAME_SAFE)
        headers.append((header, _header_value(value or "")))
    return headers


def _header_value(value: str) -> str:
    """`value` as an HTTP header can carry it: printable ASCII as is, anything else escaped."""
    if value.isascii() and value.isprintable():
        return value
    return quote(value, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")


def _no_reply(
    topic: str,
    payload: bytes,
    /,
    *,
    qos: int = 1,
    on_acknowledged: Callable[[], None] | None = None,
) -> None:
    """Telemetry has no reply; `Hub.publish` wants somewhere to send one."""
