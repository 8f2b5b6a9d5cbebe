"""IoT Hub's service REST API, as azure-iot-hub 2.7.0 and Node azure-iothub use it: the pure core.

`ServiceApi.handle(request, port_hub=..., now=...)` turns one `Request` into a
`ServiceResponse`, or into a `MethodCall` that the shell (`service.server`) completes by waiting
for the device (`invoke`, then `method_result` / `method_timeout`). It reads no clock, opens no
socket, and draws no random numbers (new device keys come from the injected `make_key`).

Pipeline for every request, in order (docs/protocol/hub-service-rest.md):

1. hub: the one whose host name the `Host` header names, else the hub of the port it came in on;
2. `api-version` query parameter present, else 400 InvalidProtocolVersion;
3. `Authorization`: a SAS token (Python form: `sr` URL-encoded, `skn` last; Node form: raw `sr`,
   `skn` second; any order) whose `skn` names the hub's policy, whose resource is the `Host`
   header or the hub name, unexpired, signed by the policy key -> else 401 IotHubUnauthorizedAccess;
4. route and method (`/devices`, `/devices/`, `/devices/{id}`, `/devices/query`, `/twins/{id}`,
   `/twins/{id}/methods`, `/statistics/devices`, `/statistics/service`; ids percent-decoded);
5. body: JSON where one is expected, checked field by field (400 ArgumentInvalid naming it).

Semantics: PUT device answers 200 (create and update), DELETE 204; without `If-Match` a PUT
creates (409 DeviceAlreadyExists if taken); `If-Match: "*"` (quoted or not) is unconditional and
creates a missing device; any other etag must be current (412 PreconditionFailed, 404 if absent).
Empty or missing symmetric keys are generated. Twin PATCH merges `tags` and
`properties.desired`, PUT replaces them; other fields (reported, `$metadata`, `$version`) are
ignored as the service does. Queries are IoT Hub's query language over device twins (`query`:
parse, run, page); pages of `x-ms-max-item-count` (at most 100) with an opaque `x-ms-continuation`,
omitted on the last page; a bad query is 400 ArgumentInvalid naming where and what was expected.

Every error is built by `error_response`: the semicolon body
`{"Message": "ErrorCode:<Name>;<text>", "ExceptionMessage": "Tracking ID:...-TimeStamp:..."}` and
the `iothub-errorcode` header. Messages name the field; never a key, token or signature. Direct
method errors have IoT Hub's structured body instead, a JSON document inside `Message` with the
numeric `errorCode` (404103 DeviceNotOnline, 504101 GatewayTimeout), `trackingId`, `message`,
`info` and `timestampUtc` (hub-service-rest.md §8). A method call waits up to its
`connectTimeoutInSeconds` (0 to 300, default 0) for the device to come online and subscribe,
then up to `responseTimeoutInSeconds` (5 to 300, default 30) for its answer.

Errors (internal; all become responses):

    ServiceError            status + IoT Hub error code name + message
    (hub.HubError and twin.TwinError are translated by `_hub_error`)
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from allocation.errors import RequestError
from allocation.strict_json import decode
from devtools.keys import new_key
from emulator.hub.directory import Hubs
from emulator.hub.endpoint import Hub
from emulator.hub.messages import MethodResponse
from emulator.hub.registry import (
    DeviceAlreadyExists,
    DeviceNotFound,
    DeviceNotOnline,
    HubError,
    PreconditionFailed,
    UnknownHub,
)
from emulator.hub.twin import TwinError
from emulator.service import query
from emulator.service.views import device_json, twin_json
from sas import SasError, decode_key, parse_sas_token, verify_sas_token
from sas.errors import KeyFormatError

__all__ = [
    "MethodCall",
    "Request",
    "ServiceApi",
    "ServiceError",
    "ServicePolicyKey",
    "ServiceResponse",
    "error_response",
    "generate_device_key",
]

JSON_TYPE = "application/json; charset=utf-8"
MAX_PAGE_SIZE = 1000
DEFAULT_METHOD_TIMEOUT = 30
MAX_CONNECT_TIMEOUT = 300
DEVICE_NOT_ONLINE = (
    404103,
    "The operation failed because the requested device isn't online or hasn't registered the "
    "direct method callback.",
)
GATEWAY_TIMEOUT = (504101, "Timed out waiting for the response from device.")
_DEVICE_ID = re.compile(r"[A-Za-z0-9\-.+%_#*?!(),=@$':;]{1,128}")


def generate_device_key() -> str:
    """A new device key: base64 of 32 random bytes, as the service generates them."""
    return new_key(32)


class ServiceError(Exception):
    """One service API error: HTTP status, IoT Hub error code name and a message; `number` (the
    six-digit code) asks for the structured body."""

    def __init__(self, status: int, code: str, message: str, *, number: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.number = number


@dataclass(frozen=True, kw_only=True)
class Request:
    """One HTTP request as the core needs it (the server has parsed and bounded it)."""

    method: str
    target: str  # path and query, as sent
    headers: Mapping[str, str] = field(repr=False)  # lower-cased names; holds credentials
    body: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, kw_only=True)
class ServicePolicyKey:
    """A hub's shared access policy for the service API."""

    key_name: str
    key: str = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class ServiceResponse:
    """One response: status, headers and body."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True, kw_only=True)
class MethodCall:
    """A direct method the shell must send to the device and wait for (`timeout` seconds)."""

    hub: Hub
    device_id: str
    method_name: str
    payload: Any = field(repr=False)
    timeout: float
    connect_timeout: float = 0.0  # seconds to wait for the device to come online first


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    now: float,
    tracking: str,
    number: int | None = None,
) -> ServiceResponse:
    """The one place a wire error is built (hub-service-rest.md §8): the semicolon form, or with
    `number` the structured form direct methods get."""
    moment = datetime.fromtimestamp(now, tz=UTC)
    body: dict[str, str]
    if number is None:
        stamp = moment.strftime("%m/%d/%Y %H:%M:%S")
        body = {
            "Message": f"ErrorCode:{code};{message}",
            "ExceptionMessage": f"Tracking ID:{tracking}-G:0-TimeStamp:{stamp}",
        }
    else:
        detail = {
            "errorCode": number,
            "trackingId": tracking,
            "message": message,
            "info": {},
            "timestampUtc": moment.strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{moment.microsecond * 10:07d}Z",
        }
        body = {"Message": json.dumps(detail, separators=(",", ":")), "ExceptionMessage": ""}
    return ServiceResponse(
        status=status,
        headers=(("Content-Type", JSON_TYPE), ("iothub-errorcode", code)),
        body=json.dumps(body).encode("utf-8"),
    )


def _json(status: int, value: object, *extra: tuple[str, str]) -> ServiceResponse:
    return ServiceResponse(
        status=status,
        headers=(("Content-Type", JSON_TYPE), *extra),
        body=json.dumps(value).encode("utf-8"),
    )


class ServiceApi:
    """The service REST API of every hub."""

    def __init__(
        self,
        hubs: Hubs,
        policies: Mapping[str, ServicePolicyKey],
        *,
        make_key: Callable[[], str] = generate_device_key,
    ) -> None:
        self._hubs = hubs
        self._policies = {name.lower(): policy for name, policy in policies.items()}
        self._make_key = make_key
        self._tracking = 0

    def handle(
        self, request: Request, *, port_hub: str, now: float
    ) -> ServiceResponse | MethodCall:
        """Answer one request (see the module docstring for the pipeline)."""
        try:
            return self._handle(request, port_hub, now)
        except ServiceError as error:
            return self._error(error, now)
        except (HubError, TwinError) as error:
            return self._error(_hub_error(error), now)

    def error(
        self, status: int, code: str, message: str, *, now: float, number: int | None = None
    ) -> ServiceResponse:
        """An error response with a fresh tracking id."""
        self._tracking += 1
        return error_response(
            status, code, message, now=now, tracking=f"{self._tracking:032x}", number=number
        )

    def _error(self, error: ServiceError, now: float) -> ServiceResponse:
        return self.error(error.status, error.code, str(error), now=now, number=error.number)

    # -- direct methods (completed by the shell) --------------------------------------------------

    def invoke(
        self, call: MethodCall, on_response: Callable[[MethodResponse], None], *, now: float
    ) -> ServiceResponse | str:
        """Send the method request to the device: its rid, or an error response."""
        try:
            return call.hub.invoke_method(
                call.device_id, call.method_name, call.payload, on_response=on_response
            )
        except HubError as error:
            return self._error(_hub_error(error), now)

    @staticmethod
    def method_result(response: MethodResponse) -> ServiceResponse:
        """200 with the device's status and payload."""
        return _json(200, {"status": response.status, "payload": response.payload})

    def method_timeout(self, call: MethodCall, rid: str, *, now: float) -> ServiceResponse:
        """The device did not answer in time: forget the request, answer 504 (504101)."""
        call.hub.cancel_method(rid)
        number, message = GATEWAY_TIMEOUT
        return self.error(504, "GatewayTimeout", message, now=now, number=number)

    # -- pipeline ----------------------------------------------------------------------------------

    def _handle(self, request: Request, port_hub: str, now: float) -> ServiceResponse | MethodCall:
        host = request.headers.get("host", "")
        hub = self._hub_for(host, port_hub)
        parts = urlsplit(request.target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if not query.get("api-version"):
            raise ServiceError(
                400, "InvalidProtocolVersion", "api-version: expected a query parameter"
            )
        self._authorize(request.headers.get("authorization"), hub, host, now)
        segments = [unquote(segment) for segment in parts.path.split("/")[1:]]
        return self._route(request, hub, segments, query, now)

    def _hub_for(self, host: str, port_hub: str) -> Hub:
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        try:
            return self._hubs.hub(name)
        except UnknownHub:
            return self._hubs.hub(port_hub)

    def _authorize(self, header: str | None, hub: Hub, host: str, now: float) -> None:
        policy = self._policies.get(hub.name.lower())
        if header is None or policy is None:
            raise _unauthorized()
        try:
            token = parse_sas_token(header.strip())
        except SasError:
            raise _unauthorized() from None
        if token.key_name != policy.key_name:
            raise _unauthorized()
        allowed = {host.lower(), hub.name.lower()}
        if token.resource.lower() not in allowed:
            raise _unauthorized()
        try:
            verify_sas_token(token, [policy.key], expected_resource=token.resource, now=now)
        except SasError:
            raise _unauthorized() from None

    def _route(
        self,
        request: Request,
        hub: Hub,
        segments: list[str],
        query: Mapping[str, str],
        now: float,
    ) -> ServiceResponse | MethodCall:
        method = request.method
        match segments:
            case ["devices"] | ["devices", ""]:
                _allow(method, "GET")
                return self._list_devices(hub, query)
            case ["devices", "query"]:
                _allow(method, "POST")
                return self._query(hub, request)
            case ["devices", device_id]:
                _allow(method, "GET", "PUT", "DELETE")
                _check_device_id(device_id)
                if method == "GET":
                    return _json(200, device_json(_view(hub, device_id)))
                if method == "PUT":
                    return self._put_device(hub, device_id, request, now)
                hub.remove_device(device_id, if_match=_if_match(request) or "*", now=now)
                return ServiceResponse(status=204)
            case ["twins", device_id]:
                _allow(method, "GET", "PATCH", "PUT")
                _check_device_id(device_id)
                if method != "GET":
                    self._write_twin(hub, device_id, request, now)
                return _json(200, twin_json(_view(hub, device_id)))
            case ["twins", device_id, "methods"]:
                _allow(method, "POST")
                _check_device_id(device_id)
                return _method_call(hub, device_id, _body(request))
            case ["statistics", "devices"]:
                _allow(method, "GET")
                stats = hub.statistics()
                return _json(
                    200,
                    {
                        "totalDeviceCount": stats.total,
                        "enabledDeviceCount": stats.enabled,
                        "disabledDeviceCount": stats.disabled,
                    },
                )
            case ["statistics", "service"]:
                _allow(method, "GET")
                return _json(200, {"connectedDeviceCount": hub.statistics().connected})
        raise ServiceError(404, "NotFound", "path: not an IoT Hub service API path")

    def _list_devices(self, hub: Hub, query: Mapping[str, str]) -> ServiceResponse:
        top_text = query.get("top")
        top = MAX_PAGE_SIZE
        if top_text is not None:
            if not top_text.isdigit():
                raise ServiceError(400, "ArgumentInvalid", "top: expected a whole number")
            top = int(top_text) if 1 <= int(top_text) <= MAX_PAGE_SIZE else MAX_PAGE_SIZE
        ids = hub.device_ids()[:top]
        return _json(200, [device_json(_view(hub, device_id)) for device_id in ids])

    def _put_device(
        self, hub: Hub, device_id: str, request: Request, now: float
    ) -> ServiceResponse:
        spec = _device_spec(device_id, _body(request))
        primary = spec.primary_key or self._make_key()
        secondary = spec.secondary_key or self._make_key()
        if_match = _if_match(request)
        arguments: dict[str, Any] = {
            "primary_key": primary,
            "secondary_key": secondary,
            "enabled": spec.enabled,
            "status_reason": spec.status_reason,
            "iot_edge": spec.iot_edge,
            "now": now,
        }
        if if_match is None or (if_match == "*" and hub.device(device_id) is None):
            hub.create_device(device_id, **arguments)
        else:
            hub.update_device(device_id, if_match=if_match, **arguments)
        view = _view(hub, device_id)
        return _json(200, device_json(view), ("ETag", f'"{view.etag}"'))

    def _write_twin(self, hub: Hub, device_id: str, request: Request, now: float) -> None:
        body = _body(request)
        if not isinstance(body, dict):
            raise ServiceError(400, "ArgumentInvalid", "body: expected a twin object")
        tags = body.get("tags")
        properties = body.get("properties")
        if properties is not None and not isinstance(properties, dict):
            raise ServiceError(400, "ArgumentInvalid", "properties: expected an object")
        desired = (properties or {}).get("desired")
        if desired is not None:
            if not isinstance(desired, dict):
                raise ServiceError(400, "ArgumentInvalid", "properties.desired: expected an object")
            desired = {key: value for key, value in desired.items() if not key.startswith("$")}
        if_match = _if_match(request) or "*"
        if request.method == "PUT":
            hub.replace_twin(device_id, tags=tags, desired=desired, if_match=if_match, now=now)
        else:
            hub.patch_twin(
                device_id, tags=tags or None, desired=desired or None, if_match=if_match, now=now
            )

    def _query(self, hub: Hub, request: Request) -> ServiceResponse:
        body = _body(request)
        text = body.get("query") if isinstance(body, dict) else None
        if not isinstance(text, str):
            raise ServiceError(400, "ArgumentNull", 'query: expected a body {"query": "..."}')
        try:
            parsed = query.parse(text)
            size = query.page_size(request.headers.get("x-ms-max-item-count"))
            cursor = query.decode_cursor(request.headers.get("x-ms-continuation"), parsed)
        except query.QueryError as error:
            raise ServiceError(400, "ArgumentInvalid", str(error)) from None
        page = parsed.page(hub.device_ids(), lambda device_id: _twin(hub, device_id), cursor, size)
        headers = [("x-ms-item-type", page.item_type)]
        if page.continuation is not None:
            headers.append(("x-ms-continuation", page.continuation))
        return _json(200, page.items, *headers)


@dataclass(frozen=True, kw_only=True)
class _DeviceSpec:
    primary_key: str | None = field(repr=False)
    secondary_key: str | None = field(repr=False)
    enabled: bool
    status_reason: str | None
    iot_edge: bool


def _device_spec(device_id: str, body: object) -> _DeviceSpec:
    if not isinstance(body, dict):
        raise ServiceError(400, "ArgumentInvalid", "body: expected a device object")
    if body.get("deviceId") not in (None, device_id):
        raise ServiceError(400, "ArgumentInvalid", "deviceId: expected the id in the path")
    status = body.get("status") or "enabled"
    if status not in ("enabled", "disabled"):
        raise ServiceError(400, "ArgumentInvalid", "status: expected enabled or disabled")
    reason = body.get("statusReason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 128):
        raise ServiceError(400, "ArgumentInvalid", "statusReason: expected at most 128 characters")
    authentication = body.get("authentication") or {}
    if not isinstance(authentication, dict):
        raise ServiceError(400, "ArgumentInvalid", "authentication: expected an object")
    kind = authentication.get("type") or "sas"
    if kind != "sas":
        raise ServiceError(
            400, "ArgumentInvalid", "authentication.type: expected sas (X.509 is not emulated)"
        )
    symmetric = authentication.get("symmetricKey") or {}
    if not isinstance(symmetric, dict):
        raise ServiceError(
            400, "ArgumentInvalid", "authentication.symmetricKey: expected an object"
        )
    keys = [symmetric.get("primaryKey") or None, symmetric.get("secondaryKey") or None]
    for name, key in zip(("primaryKey", "secondaryKey"), keys, strict=True):
        if key is None:
            continue
        where = f"authentication.symmetricKey.{name}"
        if not isinstance(key, str):
            raise ServiceError(400, "ArgumentInvalid", f"{where}: expected a base64 key")
        try:
            decode_key(key, name=where)
        except KeyFormatError as error:
            raise ServiceError(400, "ArgumentInvalid", str(error)) from None
    capabilities = body.get("capabilities") or {}
    edge = capabilities.get("iotEdge", False) if isinstance(capabilities, dict) else None
    if not isinstance(edge, bool):
        raise ServiceError(400, "ArgumentInvalid", "capabilities.iotEdge: expected true or false")
    return _DeviceSpec(
        primary_key=keys[0],
        secondary_key=keys[1],
        enabled=status == "enabled",
        status_reason=reason,
        iot_edge=edge,
    )


def _method_call(hub: Hub, device_id: str, body: object) -> MethodCall:
    if not isinstance(body, dict):
        raise ServiceError(400, "ArgumentInvalid", "body: expected a method request object")
    name = body.get("methodName")
    if not isinstance(name, str) or not name:
        raise ServiceError(400, "ArgumentInvalid", "methodName: expected a non-empty string")
    timeout = body.get("responseTimeoutInSeconds")
    if timeout is None:
        timeout = DEFAULT_METHOD_TIMEOUT
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 5 <= timeout <= 300:
        raise ServiceError(
            400, "ArgumentInvalid", "responseTimeoutInSeconds: expected 5 to 300 seconds"
        )
    connect = body.get("connectTimeoutInSeconds")
    if connect is None:
        connect = 0
    if (
        isinstance(connect, bool)
        or not isinstance(connect, int)
        or not 0 <= connect <= MAX_CONNECT_TIMEOUT
    ):
        raise ServiceError(
            400,
            "ArgumentInvalid",
            f"connectTimeoutInSeconds: expected 0 to {MAX_CONNECT_TIMEOUT} seconds",
        )
    return MethodCall(
        hub=hub,
        device_id=device_id,
        method_name=name,
        payload=body.get("payload"),
        timeout=float(timeout),
        connect_timeout=float(connect),
    )


def _twin(hub: Hub, device_id: str) -> dict[str, Any] | None:
    view = hub.device_view(device_id)
    return None if view is None else twin_json(view)


def _view(hub: Hub, device_id: str) -> Any:
    view = hub.device_view(device_id)
    if view is None:
        raise DeviceNotFound(f"Device {device_id} not registered")
    return view


def _body(request: Request) -> Any:
    if not request.body.strip():
        return None
    try:
        return decode(request.body)
    except RequestError as error:
        raise ServiceError(400, "ArgumentInvalid", str(error)) from None


def _if_match(request: Request) -> str | None:
    value = request.headers.get("if-match")
    if value is None:
        return None
    value = value.strip()
    value = value.removeprefix("W/")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value or None


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise ServiceError(405, "MethodNotAllowed", f"method: expected {' or '.join(allowed)}")


def _check_device_id(device_id: str) -> None:
    if not _DEVICE_ID.fullmatch(device_id):
        raise ServiceError(
            400,
            "ArgumentInvalid",
            "deviceId: expected 1 to 128 letters, digits or - . + % _ # * ? ! ( ) , = @ $ ' : ;",
        )


def _unauthorized() -> ServiceError:
    return ServiceError(401, "IotHubUnauthorizedAccess", "Unauthorized")


def _hub_error(error: HubError | TwinError) -> ServiceError:
    if isinstance(error, TwinError):
        return ServiceError(400, "ArgumentInvalid", str(error))
    if isinstance(error, DeviceAlreadyExists):
        return ServiceError(409, "DeviceAlreadyExists", str(error))
    if isinstance(error, PreconditionFailed):
        return ServiceError(412, "PreconditionFailed", str(error))
    if isinstance(error, DeviceNotOnline):
        number, message = DEVICE_NOT_ONLINE
        return ServiceError(404, "DeviceNotOnline", message, number=number)
    if isinstance(error, DeviceNotFound | UnknownHub):
        return ServiceError(404, "DeviceNotFound", str(error))
    return ServiceError(500, "ServerError", type(error).__name__)
