"""DPS's HTTPS device API: register and poll, as the Node SDK's HTTP transport and curl send them.

    PUT /{idScope}/registrations/{registrationId}/register?api-version=...
        body {"registrationId": ..., "payload": ...}            -> 202 + Retry-After, {"operationId", "status": "assigning"}
    GET /{idScope}/registrations/{registrationId}/operations/{operationId}?api-version=...
                                                                -> 202 + Retry-After while assigning, else 200

`Authorization: SharedAccessSignature sr={idScope}%2fregistrations%2f{registrationId}&sig=...
&se=...[&skn=registration]` (docs/protocol/transports.md §3). Each request is authorized on its
own (`dps.auth.authorize`, the check an MQTT CONNECT gets) and then served by the same
`DpsService.register` / `poll` the MQTT endpoint calls, so the bodies, statuses and errors are
DPS's over either transport; only the envelope differs: the status is the HTTP status,
`retry-after` a header instead of a topic parameter.

Refusals, in the order they are checked, with DPS's error body (`wire.error_body`) and its code
in `x-ms-error-code`:

    404  a path DPS does not serve (registration status lookups are not emulated either)
    405  another method on a known path
    400  no `api-version` query parameter
    401  no, malformed, expired or wrong token; unknown id scope (401002)
    429  DPS throttled by a fault (`fault-set dps --throttle-seconds`), with Retry-After
    400  a register body DPS refuses (400012), or 401 (401002) when it names another
         registration id

Pure: no I/O, no clock (`now` is an argument). Never logs or echoes a token.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote

from emulator.dps.auth import AuthenticationError, Registrant, authorize
from emulator.dps.codes import DpsErrorCode
from emulator.dps.wire import (
    DpsRequestError,
    Reply,
    error_body,
    register_payload,
)
from emulator.faults.spec import THROTTLED_ERROR_CODE, THROTTLED_MESSAGE
from emulator.service.api import Request, ServiceResponse

if TYPE_CHECKING:
    from emulator.dps.service import DpsService

__all__ = ["DpsHttpApi", "is_dps_path"]

JSON_TYPE = "application/json; charset=utf-8"

Throttle = Callable[[float], int | None]
"""Seconds a throttled DPS tells the device to wait, or None when it is not throttled."""


def is_dps_path(path: str) -> bool:
    """Whether a path has DPS's shape, `/{idScope}/registrations/...` (how the gateway tells DPS
    from a hub when the `Host` header names neither)."""
    segments = path.split("/")
    return len(segments) > 3 and segments[0] == "" and segments[2] == "registrations"


class DpsHttpApi:
    """DPS's device-facing HTTPS API over one `DpsService`."""

    def __init__(self, dps: DpsService, *, throttle: Throttle | None = None) -> None:
        self._dps = dps
        self._throttle = throttle

    def handle(self, request: Request, *, now: float) -> ServiceResponse:
        """Answer one request (see the module docstring for the order of checks)."""
        path, _, query = request.target.partition("?")
        segments = [unquote(segment) for segment in path.split("/")[1:]]
        route = _route(segments)
        if route is None:
            return _error(404, DpsErrorCode.REGISTRATION_NOT_FOUND, "Unknown DPS path.", now)
        method, scope, registration_id, operation_id = route
        if request.method != method:
            return _error(
                405, DpsErrorCode.ARGUMENT_INVALID, f"Method {request.method} is not allowed.", now
            )
        if not parse_qs(query).get("api-version"):
            return _error(
                400,
                DpsErrorCode.ARGUMENT_INVALID,
                "The api-version query parameter is missing.",
                now,
            )
        try:
            registrant = self._authorize(request, scope, registration_id, now)
        except AuthenticationError:
            return _error(401, DpsErrorCode.UNAUTHORIZED, "Unauthorized.", now)
        retry_after = self._throttle(now) if self._throttle is not None else None
        if retry_after is not None:
            throttled = error_body(THROTTLED_ERROR_CODE, THROTTLED_MESSAGE, now=now)
            return _response(Reply(429, throttled, retry_after), THROTTLED_ERROR_CODE)
        if operation_id is not None:
            return _response(self._dps.poll(registrant, operation_id, now=now))
        try:
            payload = register_payload(request.body, registrant.registration_id)
        except DpsRequestError as error:
            return _error(error.status, error.code, error.message, now)
        return _response(self._dps.register(registrant, payload, now=now))

    def _authorize(
        self, request: Request, scope: str, registration_id: str, now: float
    ) -> Registrant:
        header = request.headers.get("authorization")
        return authorize(
            self._dps.config,
            id_scope=scope,
            registration_id=registration_id,
            token=header.encode("utf-8") if header is not None else None,
            now=now,
        )


def _route(segments: list[str]) -> tuple[str, str, str, str | None] | None:
    """(method, id scope, registration id, operation id or None) of a DPS path, or None."""
    if len(segments) < 4 or segments[1] != "registrations" or not segments[0] or not segments[2]:
        return None
    scope, _, registration_id, *rest = segments
    if rest == ["register"]:
        return "PUT", scope, registration_id, None
    if len(rest) == 2 and rest[0] == "operations" and rest[1]:
        return "GET", scope, registration_id, rest[1]
    return None


def _response(reply: Reply, error_code: int | None = None) -> ServiceResponse:
    headers = [("Content-Type", JSON_TYPE)]
    if reply.retry_after is not None:
        headers.append(("Retry-After", str(reply.retry_after)))
    if error_code is None and reply.status >= 400:
        error_code = _error_code(reply.body)
    if error_code is not None:
        headers.append(("x-ms-error-code", str(error_code)))
    return ServiceResponse(status=reply.status, headers=tuple(headers), body=reply.body)


def _error(status: int, code: int, message: str, now: float) -> ServiceResponse:
    return _response(Reply(status, error_body(code, message, now=now)), code)


def _error_code(body: bytes) -> int | None:
    try:
        code = json.loads(body).get("errorCode")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, int) else None
