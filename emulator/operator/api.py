"""The operator's API: JSON over HTTP on 127.0.0.1, for `python -m emulator <command>` and the console.

A Starlette app (`AdminApi.app`) served by `web.server` on the emulator's event loop, where DPS and
the hubs live, so handlers read and change state directly. Every request carries
`Authorization: Bearer <token>`; the token is kept in `<state-dir>/admin-token` (0600), the URL in
`<state-dir>/admin.json`. What the API needs of the running emulator is the `Operations` protocol
below, nothing more: it never sees the composition root.

    GET    /admin/status                                   hubs, DPS, persistence, faults
    GET    /admin/enrollments                              enrollments (never their keys; the
                                                           webhook URL masked)
    GET    /admin/enrollments/{group|individual}/{id}/keys an enrollment's two keys (asked for
                                                           explicitly: the simulator's --local)
    POST   /admin/enrollments/{group|individual}/{id}/regenerate-key
                                                           {"slot": "primary"|"secondary",
                                                            "return_key": false}; the new key
                                                           is also written into the config file
    POST   /admin/enrollments/{group|individual}/{id}/enable     (and /disable)
    GET    /admin/registrations                            each registration id's state: in
                                                           flight, assigned, failed, disabled
    GET    /admin/registrations/{id}                       one of them
    GET    /admin/hubs/{hub}/devices                       device ids, enabled, connected
    GET    /admin/hubs/{hub}/devices/{id}                  identity (no keys), session, twin
    DELETE /admin/hubs/{hub}/devices/{id}
    POST   /admin/hubs/{hub}/devices/{id}/c2d              {"body": "...", "properties": {...},
                                                            "message_id", "correlation_id",
                                                            "content_type", "content_encoding",
                                                            "ttl_seconds" | "expiry" (ISO 8601),
                                                            "ack": none|positive|negative|full}
                                                           (403 when 50 messages wait)
    GET    /admin/hubs/{hub}/telemetry?since=N&wait=S&device=ID    long poll, `next` to go on
    GET    /admin/faults                                   active faults
    PUT    /admin/faults/{target}                          a `faults.FaultSpec` as JSON
    DELETE /admin/faults/{target}
    POST   /admin/faults/{target}/drop                     {"client_id": optional}

Answers are JSON objects; errors are `{"error": {"code": ..., "message": ...}}` with 400 (bad
JSON, a field that is wrong, named), 401 (token), 404 (no such route, hub, device, enrollment),
405, 413/431 (sizes; `web.server`'s limits), 500 never for bad input. A key appears in an answer only when the
request asked for it (`return_key`); nothing here logs a key or the token.

Errors:

    AdminError     an answer other than 2xx: `status`, a short `code`, a message naming the field
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from allocation.errors import RequestError
from allocation.strict_json import decode
from devtools.urls import mask_url
from emulator.config import ConfigError
from emulator.dps.edits import (
    EnrollmentEditError,
    EnrollmentKind,
    KeySlot,
    enrollment_id,
    find_enrollment,
    with_enabled,
    with_key,
)
from emulator.dps.enrollments import generate_key
from emulator.dps.wire import RegistrationStatus
from emulator.faults.gate import drop_connections
from emulator.faults.spec import FaultError, parse_fault_spec
from emulator.functions.host import state_key
from emulator.hub.c2d import MAX_TTL, AckMode
from emulator.hub.endpoint import Hub
from emulator.hub.messages import TelemetryMessage
from emulator.hub.registry import HubError
from emulator.operator.client import TOKEN_FILE
from emulator.web.server import HttpLimits, HttpServer, Limits, bind

__all__ = ["AdminApi", "AdminError", "AdminServer", "Operations", "Reply"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_WAIT_SECONDS = 30.0
LIMITS = HttpLimits(max_body_bytes=MAX_BODY_BYTES, body_timeout=10.0, idle_timeout=30.0)


class Operations(Protocol):
    """What the operator API needs of the running emulator (`app.Emulator` is one)."""

    dps: Any
    hubs: Any
    faults: Any
    quotas: Any
    state: Any
    options: Any

    def key_regenerated(self, kind: Any, name: str, slot: Any, key: str) -> None: ...


class AdminError(Exception):
    """A request the admin API answers with an error status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Reply:
    """One answer: status and JSON object."""

    status: int
    body: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class _Request:
    method: str
    segments: tuple[str, ...]
    query: Mapping[str, list[str]]
    body: bytes

    def json(self) -> dict[str, Any]:
        if not self.body.strip():
            return {}
        try:
            value = decode(self.body, max_bytes=MAX_BODY_BYTES)
        except RequestError as error:
            raise AdminError(400, "BadJson", f"{error}; expected a JSON object") from None
        if not isinstance(value, dict):
            raise AdminError(400, "BadJson", "body: expected a JSON object")
        return value

    def number(self, name: str, default: float) -> float:
        values = self.query.get(name)
        if not values:
            return default
        try:
            return float(values[-1])
        except ValueError:
            raise AdminError(400, "BadQuery", f"{name}: expected a number") from None


Handler = Callable[[_Request, tuple[str, ...]], Awaitable[Reply]]


class AdminApi:
    """The operator API's routes and handlers, as a Starlette app (`app`)."""

    def __init__(
        self,
        emulator: Operations,
        *,
        token: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._emulator = emulator
        self._clock = clock
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/admin/status", self._status),
            ("GET", "/admin/enrollments", self._enrollments),
            ("GET", "/admin/enrollments/{kind}/{id}/keys", self._keys),
            ("POST", "/admin/enrollments/{kind}/{id}/regenerate-key", self._regenerate_key),
            ("POST", "/admin/enrollments/{kind}/{id}/enable", self._enable),
            ("POST", "/admin/enrollments/{kind}/{id}/disable", self._disable),
            ("GET", "/admin/registrations", self._registrations),
            ("GET", "/admin/registrations/{id}", self._registration),
            ("GET", "/admin/hubs/{hub}/devices", self._devices),
            ("GET", "/admin/hubs/{hub}/devices/{id}", self._device),
            ("DELETE", "/admin/hubs/{hub}/devices/{id}", self._delete_device),
            ("POST", "/admin/hubs/{hub}/devices/{id}/c2d", self._c2d),
            ("GET", "/admin/hubs/{hub}/telemetry", self._telemetry),
            ("GET", "/admin/faults", self._faults),
            ("PUT", "/admin/faults/{target}", self._set_fault),
            ("DELETE", "/admin/faults/{target}", self._clear_fault),
            ("POST", "/admin/faults/{target}/drop", self._drop),
        ]
        by_path: dict[str, dict[str, Handler]] = {}
        for method, path, handler in routes:
            by_path.setdefault(path, {})[method] = handler
        app = Starlette(
            routes=[
                Route(path, self._endpoint(handlers), methods=list(handlers))
                for path, handlers in by_path.items()
            ],
            exception_handlers={HTTPException: _http_error},
        )
        self.app: ASGIApp = Limits(
            _BearerToken(app, token),
            limits=LIMITS,
            error=lambda status, code, text: _json(_error(AdminError(status, code, text))),
        )

    def _endpoint(
        self, handlers: Mapping[str, Handler]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            handler = handlers[request.method]
            query: dict[str, list[str]] = {}
            for name, value in request.query_params.multi_items():
                query.setdefault(name, []).append(value)
            call = _Request(
                method=request.method,
                segments=(),
                query=query,
                body=await request.body(),
            )
            captured = tuple(str(value) for value in request.path_params.values())
            try:
                reply = await handler(call, captured)
            except AdminError as error:
                reply = _error(error)
            except (HubError, EnrollmentEditError) as error:
                reply = _error(AdminError(error.status, type(error).__name__, str(error)))
            return _json(reply)

        return endpoint

    # -- handlers -------------------------------------------------------------------------------

    async def _status(self, request: _Request, _: tuple[str, ...]) -> Reply:
        emulator = self._emulator
        dps, faults = _started(emulator.dps), _started(emulator.faults)
        hubs = []
        for hub in _started(emulator.hubs):
            ids = hub.device_ids()
            hubs.append(
                {
                    "name": hub.name,
                    "devices": len(ids),
                    "connected": sum(1 for device_id in ids if hub.is_connected(device_id)),
                    "messages_received": hub.messages_received,
                }
            )
        state = emulator.state
        attempts = dps.attempts()
        return Reply(
            200,
            {
                "dps": {
                    "id_scope": dps.id_scope,
                    "host": dps.config.dps.host,
                    "enrollments": len(dps.config.enrollment_groups)
                    + len(dps.config.individual_enrollments),
                    "registrations": len(dps.records()),
                    "assigning": sum(a.status is RegistrationStatus.ASSIGNING for a in attempts),
                    "failed": sum(a.status is RegistrationStatus.FAILED for a in attempts),
                },
                "hubs": hubs,
                "mqtt": f"{emulator.options.bind}:{emulator.options.mqtt_port}",
                "state_file": str(state.path) if state is not None else None,
                "faults": faults.describe(self._clock()),
                "quotas": emulator.quotas.describe() if emulator.quotas is not None else None,
            },
        )

    async def _enrollments(self, request: _Request, _: tuple[str, ...]) -> Reply:
        config = _started(self._emulator.dps).config
        entries = []
        for enrollment in (*config.enrollment_groups, *config.individual_enrollments):
            kind, name = enrollment_id(enrollment)
            entries.append(
                {
                    "kind": kind.value,
                    "id": name,
                    "enabled": enrollment.enabled,
                    "allocation": enrollment.allocation.value,
                    "hubs": list(enrollment.hubs),
                    "reprovision": enrollment.reprovision.value,
                    "initial_twin": (
                        {
                            "tags": dict(enrollment.initial_twin.tags),
                            "desired": dict(enrollment.initial_twin.desired),
                        }
                        if enrollment.initial_twin is not None
                        else None
                    ),
                    "webhook_url": (
                        mask_url(enrollment.webhook_url) if enrollment.webhook_url else None
                    ),
                }
            )
        return Reply(200, {"enrollments": entries})

    async def _keys(self, request: _Request, captured: tuple[str, ...]) -> Reply:
        kind, name = _kind(captured[0]), captured[1]
        enrollment = find_enrollment(_started(self._emulator.dps).config, kind, name)
        log.info("admin: keys of %s enrollment %r read", kind.value, name)
        return Reply(
            200,
            {
                "kind": kind.value,
                "id": enrollment_id(enrollment)[1],
                "primary_key": enrollment.primary_key,
                "secondary_key": enrollment.secondary_key,
            },
        )

    async def _regenerate_key(self, request: _Request, captured: tuple[str, ...]) -> Reply:
        kind, name = _kind(captured[0]), captured[1]
        body = request.json()
        try:
            slot = KeySlot(str(body.get("slot")))
        except ValueError:
            raise AdminError(400, "BadField", "slot: expected primary or secondary") from None
        return_key = body.get("return_key", False)
        if not isinstance(return_key, bool):
            raise AdminError(400, "BadField", "return_key: expected true or false")
        key = generate_key()
        name = await self._edit(kind, name, lambda config: with_key(config, kind, name, slot, key))
        try:
            self._emulator.key_regenerated(kind, name, slot, key)
        except ConfigError as error:
            log.warning("admin: the new key is in use but not in the config file: %s", error)
        log.info("admin: regenerated the %s key of %s enrollment %r", slot.value, kind.value, name)
        answer: dict[str, Any] = {
            "kind": kind.value,
            "id": name,
            "slot": slot.value,
            "persisted": self._emulator.state is not None,
        }
        if return_key:
            answer["key"] = key
        return Reply(200, answer)

    async def _enable(self, request: _Request, captured: tuple[str, ...]) -> Reply:
        return await self._set_enabled(captured, enabled=True)

    async def _disable(self, request: _Request, captured: tuple[str, ...]) -> Reply:
        return await self._set_enabled(captured, enabled=False)

    async def _set_enabled(self, captured: tuple[str, ...], *, enabled: bool) -> Reply:
        kind, name = _kind(captured[0]), captured[1]
        name = await self._edit(
            kind, name, lambda config: with_enabled(config, kind, name, enabled)
        )
        log.info("admin: %s enrollment %r enabled=%s", kind.value, name, enabled)
        return Reply(
            200,
            {
                "kind": kind.value,
                "id": name,
                "enabled": enabled,
                "persisted": self._emulator.state is not None,
            },
        )

    async def _edit(self, kind: EnrollmentKind, name: str, change: Callable[[Any], Any]) -> str:
        dps = _started(self._emulator.dps)
        canonical = enrollment_id(find_enrollment(dps.config, kind, name))[1]
        dps.replace_config(change(dps.config))
        if self._emulator.state is not None:
            self._emulator.state.enrollments_changed()
            try:
                await self._emulator.state.barrier()  # an operator's edit is on disk when answered
            except OSError as error:
                raise AdminError(503, "StateNotKept", str(error)) from None
        return canonical

    async def _registrations(self, request: _Request, _: tuple[str, ...]) -> Reply:
        dps = _started(self._emulator.dps)
        ids = {record.registration_id.lower(): record.registration_id for record in dps.records()}
        ids.update({a.registration_id.lower(): a.registration_id for a in dps.attempts()})
        return Reply(200, {"registrations": [self._registration_json(i) for i in ids.values()]})

    async def _registration(self, request: _Request, captured: tuple[str, ...]) -> Reply:
        dps = _started(self._emulator.dps)
        if dps.record(captured[0]) is None and dps.attempt(captured[0]) is None:
            raise AdminError(404, "NotFound", f"registration {captured[0]!r}: never registered")
        return Reply(200, self._registration_json(captured[0]))

    def _registration_json(self, registration_id: str) -> dict[str, Any]:
        """DPS's record (an assigned device) with the latest attempt over it (since start)."""
        dps = _started(self._emulator.dps)
        record, attempt = dps.record(registration_id), dps.attempt(registration_id)
        entry: dict[str, Any] = {
            "registration_id": registration_id,
            "status": "assigned",
            "device_id": None,
            "assigned_hub": None,
        }
        if record is not None:
            entry.update(
                registration_id=record.registration_id,
                device_id=record.device_id,
                assigned_hub=record.assigned_hub,
                substatus=record.substatus.value,
                created=record.created,
                last_updated=record.last_updated,
            )
        if attempt is not None:
            latest = attempt.to_json(self._clock())
            if record is not None and attempt.status is not RegistrationStatus.ASSIGNED:
                latest.update(device_id=record.device_id, assigned_hub=record.assigned_hub)
            entry.update({k: v for k, v in latest.items() if v is not None or k not in entry})
        return entry

    async def _devices(self, request: _Request, captured: tuple[str, ...]) -> Reply:
        hub = self._hub(captured[0])
        devices = []
        for device_id in hub.device_ids():
            identity = hub.device(device_id)
            devices.append(
                {
                    "device_id": device_id,
                    "enabled": identity.enabled if identity is not None else False,
                    "connected": hub.is_connected(device_id),
                }
            )
        return Reply(200, {"hub": hub.name, "devices": devices})

    async def _device(self, request: _Request, captured: tuple[str, ...]) -> Reply:
        hub = self._hub(captured[0])
        device_id = captured[1]
        identity, twin = hub.device(device_id), hub.twin(device_id)
        if identity is None or twin is None:
            raise AdminError(404, "DeviceNotFound", f"device {device_id!r} is not in {hub.name}")
        return Reply(
            200,
            {
                "hub": hub.name,
                "device_id": device_id,
                "enabled": identity.enabled,
                "connected": hub.is_connected(device_id),
                "subscriptions": sorted(hub.subscriptions(device_id)),
                "twin": twin.service_view(device_id),
            },
        )

    async def _delete_device(self, request: _Request, captured: tuple[str, ...]) -> Reply:
        hub = self._hub(captured[0])
        device_id = captured[1]
        if hub.device(device_id) is None:
            raise AdminError(404, "DeviceNotFound", f"device {device_id!r} is not in {hub.name}")
        hub.delete_device(device_id, now=self._clock())
        log.info("admin: deleted device %r from %s", device_id, hub.name)
        return Reply(200, {"hub": hub.name, "device_id": device_id, "deleted": True})

    async def _c2d(self, request: _Request, captured: tuple[str, ...]) -> Reply:
        hub = self._hub(captured[0])
        device_id = captured[1]
        body = request.json()
        text = body.get("body")
        if not isinstance(text, str):
            raise AdminError(400, "BadField", "body: expected a string (the message body)")
        properties = body.get("properties", {})
        if not isinstance(properties, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in properties.items()
        ):
            raise AdminError(400, "BadField", "properties: expected an object of strings")
        message_id = body.get("message_id") or str(uuid.uuid4())
        if not isinstance(message_id, str):
            raise AdminError(400, "BadField", "message_id: expected a string")
        texts = {
            name: _optional_text(body, name)
            for name in ("correlation_id", "content_type", "content_encoding")
        }
        now = self._clock()
        message = hub.send_c2d(
            device_id,
            text.encode("utf-8"),
            message_id=message_id,
            properties=properties,
            correlation_id=texts["correlation_id"],
            content_type=texts["content_type"],
            content_encoding=texts["content_encoding"],
            expiry=_c2d_expiry(body, now),
            ack=_c2d_ack(body),
            now=now,
        )
        return Reply(
            200,
            {
                "hub": hub.name,
                "device_id": device_id,
                "message_id": message_id,
                "expiry": datetime.fromtimestamp(message.expiry, tz=UTC).isoformat(),
                "ack": message.ack.value,
                "delivered": hub.receives_c2d(device_id),
            },
        )

    async def _telemetry(self, request: _Request, captured: tuple[str, ...]) -> Reply:
        hub = self._hub(captured[0])
        since = request.number("since", -1)
        wait = min(max(request.number("wait", 0), 0.0), MAX_WAIT_SECONDS)
        devices = request.query.get("device")
        device = devices[-1] if devices else None
        if since < 0:  # start at the end: only what arrives from now on
            since = hub.messages_received
        deadline = self._clock() + wait
        while True:
            messages = _messages_after(hub, int(since), device)
            if messages or self._clock() >= deadline:
                break
            await asyncio.sleep(0.05)
        return Reply(
            200,
            {
                "hub": hub.name,
                "next": max([int(since), *(seq for seq, _ in messages)]),
                "messages": [_message_json(seq, message) for seq, message in messages],
            },
        )

    async def _faults(self, request: _Request, _: tuple[str, ...]) -> Reply:
        return Reply(200, {"faults": _started(self._emulator.faults).describe(self._clock())})

    async def _set_fault(self, request: _Request, captured: tuple[str, ...]) -> Reply:
        faults = _started(self._emulator.faults)
        target = self._target(captured[0])
        try:
            spec = parse_fault_spec(request.json(), target=target, where="body")
        except FaultError as error:
            raise AdminError(400, "BadField", str(error)) from None
        faults.set(target, spec, now=self._clock())
        log.info("admin: faults set on %s: %s", target, spec)
        return Reply(200, {"target": target, "spec": spec.to_json()})

    async def _clear_fault(self, request: _Request, captured: tuple[str, ...]) -> Reply:
        target = self._target(captured[0])
        _started(self._emulator.faults).clear(target)
        log.info("admin: faults cleared on %s", target)
        return Reply(200, {"target": target, "cleared": True})

    async def _drop(self, request: _Request, captured: tuple[str, ...]) -> Reply:
        target = self._target(captured[0])
        client_id = request.json().get("client_id")
        if client_id is not None and not isinstance(client_id, str):
            raise AdminError(400, "BadField", "client_id: expected a string")
        dropped = drop_connections(_started(self._emulator.faults), target, client_id)
        log.info("admin: dropped %d connection(s) of %s", dropped, target)
        return Reply(200, {"target": target, "dropped": dropped})

    # -- helpers --------------------------------------------------------------------------------

    def _hub(self, name: str) -> Hub:
        hub: Hub = _started(self._emulator.hubs).hub(name)
        return hub

    def _target(self, name: str) -> str:
        try:
            target: str = _started(self._emulator.faults).target(name)
            return target
        except FaultError as error:
            raise AdminError(404, "UnknownTarget", str(error)) from None


def _optional_text(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise AdminError(400, "BadField", f"{name}: expected a string")
    return value


def _c2d_expiry(body: Mapping[str, Any], now: float) -> float | None:
    """The absolute expiry a C2D request asks for (`ttl_seconds` or `expiry`), or None."""
    ttl, expiry = body.get("ttl_seconds"), body.get("expiry")
    if ttl is not None and expiry is not None:
        raise AdminError(400, "BadField", "ttl_seconds, expiry: expected at most one of them")
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= MAX_TTL:
            raise AdminError(
                400, "BadField", f"ttl_seconds: expected more than 0 and at most {MAX_TTL:.0f}"
            )
        return now + float(ttl)
    if expiry is None:
        return None
    try:
        moment = datetime.fromisoformat(expiry) if isinstance(expiry, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise AdminError(
            400, "BadField", "expiry: expected an ISO 8601 time with a zone, e.g. 2030-01-01T00:00Z"
        )
    return moment.timestamp()


def _c2d_ack(body: Mapping[str, Any]) -> AckMode:
    value = body.get("ack", AckMode.NONE.value)
    try:
        return AckMode(value)
    except ValueError:
        options = " | ".join(mode.value for mode in AckMode)
        raise AdminError(400, "BadField", f"ack: expected {options}") from None


def _started(value: Any) -> Any:
    if value is None:
        raise AdminError(503, "NotStarted", "the emulator is not started")
    return value


def _kind(value: str) -> EnrollmentKind:
    try:
        return EnrollmentKind(value)
    except ValueError:
        raise AdminError(404, "NotFound", "enrollment kind: expected group or individual") from None


def _error(error: AdminError) -> Reply:
    return Reply(error.status, {"error": {"code": error.code, "message": error.message}})


def _messages_after(hub: Hub, since: int, device: str | None) -> list[tuple[int, TelemetryMessage]]:
    log_ = hub.messages
    first = hub.messages_received - len(log_) + 1  # sequence number of log_[0]
    start = max(0, since + 1 - first)
    return [
        (first + index, message)
        for index, message in enumerate(log_[start:], start=start)
        if device is None or message.device_id == device
    ]


def _message_json(seq: int, message: TelemetryMessage) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "seq": seq,
        "device_id": message.device_id,
        "enqueued_at": message.enqueued_at,
        "system_properties": dict(message.system_properties),
        "properties": dict(message.properties),
    }
    try:
        entry["body"] = message.body.decode("utf-8")
    except UnicodeDecodeError:
        entry["body_base64"] = base64.b64encode(message.body).decode("ascii")
    return entry


class _BearerToken:
    """401 for any request without `Authorization: Bearer <token>` (compared in constant time)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            presented = dict(scope.get("headers", [])).get(b"authorization", b"")
            expected = f"Bearer {self._token}".encode()
            if not self._token or not hmac.compare_digest(presented, expected):
                answer = _error(
                    AdminError(401, "Unauthorized", "Authorization: expected the admin token")
                )
                await _json(answer)(scope, receive, send)
                return
        await self._app(scope, receive, send)


async def _http_error(request: Request, error: Exception) -> Response:
    status = error.status_code if isinstance(error, HTTPException) else 500
    if status == 405:
        allowed = ""
        if isinstance(error, HTTPException) and error.headers:
            allowed = error.headers.get("allow", "")
        return _json(
            _error(AdminError(405, "MethodNotAllowed", f"{request.method}: expected {allowed}"))
        )
    return _json(_error(AdminError(404, "NotFound", f"{request.url.path}: no such admin route")))


def _json(reply: Reply) -> Response:
    return JSONResponse(dict(reply.body), status_code=reply.status)


class AdminServer:
    """The operator API's listener on 127.0.0.1."""

    def __init__(
        self, emulator: Operations, *, state_dir: Path, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._emulator = emulator
        self._state_dir = state_dir
        self._host = host
        self._port = port
        self._server: HttpServer | None = None

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>` once started."""
        port = self._server.ports[0] if self._server is not None else self._port
        return f"http://{self._host}:{port}"

    async def start(self) -> None:
        """Keep the token (0600) and listen (the emulator writes `admin.json` once all is up)."""
        token, _ = state_key(self._state_dir, TOKEN_FILE)
        api = AdminApi(self._emulator, token=token)
        self._server = HttpServer(
            api.app, sockets=[bind(self._host, self._port)], limits=LIMITS, name="admin"
        )
        await self._server.start()
        log.info("admin API listening url=%s", self.url)

    async def close(self) -> None:
        """Stop listening and end requests in progress (a long-polling tail)."""
        if self._server is not None:
            await self._server.close()
            self._server = None
