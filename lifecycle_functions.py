"""Device lifecycle and admin Functions, as a Blueprint the app registers with
`app.register_functions(bp)`.

- `device_lifecycle`: Event Grid trigger for IoT Hub's DeviceCreated / DeviceDeleted /
  DeviceConnected / DeviceDisconnected. Parses with `store.lifecycle.parse_event` and applies the
  pure transition through the store. Unknown event types are logged and ignored; a malformed event
  is logged and dropped (a retry could never fix it); a store failure is raised so the host answers
  500 and Event Grid redelivers the batch (the transition is idempotent, so redelivery is safe).
- Admin API, auth level ADMIN (master key), JSON in and out, snake_case fields as stored:
  - `GET  /api/devices/{registrationId}?limit=N`: `{"device": {...}, "registrations": [...]}`
    (newest first, N in 1..100, default 20);
  - `GET  /api/devices?hub=...&status=active|retired`: `{"devices": [...]}`;
  - `POST /api/devices/{registrationId}/retire` (optional body `{"reason": "..."}`) and
    `POST /api/devices/{registrationId}/reinstate`: `{"device", "hub", "hub_touched", "message"}`.
  Bad input → 400 and missing device → 404, with `{"error": "<field>: <what was expected>"}`; store
  unreachable → 503 with `Retry-After`; never a traceback.

No work at import: the store, hub clients and settings come from `store.runtime.get_runtime()` on the
first invocation; azure-data-tables and azure-iot-hub are not imported by importing this module.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import azure.functions as func

from allocation import strict_json
from allocation.errors import RequestError
from store.base import DeviceNotFound, InvalidKey, StoreError, StoreUnavailable
from store.lifecycle import InvalidEvent, UnknownEventType, parse_event
from store.logline import Quoted
from store.records import DeviceRecord, DeviceStatus, device_to_dict, registration_to_dict
from store.retire import RetireResult, reinstate, retire
from store.runtime import get_runtime
from store.settings import SettingsError

log = logging.getLogger(__name__)

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions is partly untyped

MAX_REASON_CHARS = 256
MAX_BODY_BYTES = 4096  # {"reason": ...} with 256 characters, escaped, fits with room to spare
MAX_BODY_DEPTH = 4
MAX_HISTORY = 100
DEFAULT_HISTORY = 20


class BadRequest(ValueError):
    """Client input error; the message names the field."""


@bp.event_grid_trigger(arg_name="event")
def device_lifecycle(event: func.EventGridEvent) -> None:
    """Apply one IoT Hub device lifecycle event to the inventory."""
    try:
        parsed = parse_event(
            event_id=event.id,
            event_type=event.event_type,
            event_time=event.event_time,
            data=event.get_json(),
        )
    except UnknownEventType:
        log.info(
            "lifecycle event %s ignored: type %s is not handled",
            Quoted(event.id),
            Quoted(event.event_type),
        )
        return
    except InvalidEvent as exc:
        log.error("lifecycle event %s dropped: %s", Quoted(event.id), Quoted(str(exc)))
        return
    changed = get_runtime().store.apply_lifecycle(parsed)
    log.info(
        "lifecycle event %s %s for device %s on %s: %s",
        Quoted(parsed.event_id),
        parsed.kind.name,
        Quoted(parsed.device_id),
        Quoted(parsed.hub_name),
        "applied" if changed is not None else "no change (stale or redelivered)",
    )


@bp.route(route="devices/{registrationId}", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def admin_get_device(req: func.HttpRequest) -> func.HttpResponse:
    """Inventory row plus the latest registrations of one device."""
    return _respond(lambda: _get_device(req))


@bp.route(route="devices", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def admin_list_devices(req: func.HttpRequest) -> func.HttpResponse:
    """Inventory rows filtered by hub and/or status."""
    return _respond(lambda: _list_devices(req))


@bp.route(
    route="devices/{registrationId}/retire", methods=["POST"], auth_level=func.AuthLevel.ADMIN
)
def admin_retire_device(req: func.HttpRequest) -> func.HttpResponse:
    """Block provisioning for the device and disable it in its hub."""
    return _respond(lambda: _retire(req))


@bp.route(
    route="devices/{registrationId}/reinstate", methods=["POST"], auth_level=func.AuthLevel.ADMIN
)
def admin_reinstate_device(req: func.HttpRequest) -> func.HttpResponse:
    """Allow provisioning again and enable the device in its hub."""
    return _respond(lambda: _reinstate(req))


# -- handlers: HTTP request -> values -> store -> JSON ---------------------------------------------


def _get_device(req: func.HttpRequest) -> tuple[int, dict[str, Any]]:
    registration_id = _registration_id(req)
    limit = _limit(req.params.get("limit"))
    store = get_runtime().store
    device = store.get_device(registration_id)
    if device is None:
        raise DeviceNotFound(registration_id)
    history = store.registration_history(registration_id, limit=limit)
    return 200, {
        "device": _device_json(device),
        "registrations": [registration_to_dict(r) for r in history],
    }


def _list_devices(req: func.HttpRequest) -> tuple[int, dict[str, Any]]:
    hub = req.params.get("hub") or None
    status_text = req.params.get("status")
    status = None
    if status_text:
        try:
            status = DeviceStatus(status_text)
        except ValueError:
            raise BadRequest(f"status: expected active or retired, got {status_text!r}") from None
    devices = get_runtime().store.list_devices(hub=hub, status=status)
    return 200, {"devices": [_device_json(d) for d in devices]}


def _retire(req: func.HttpRequest) -> tuple[int, dict[str, Any]]:
    registration_id = _registration_id(req)
    reason = _reason(req)
    rt = get_runtime()
    result = retire(rt.store, registration_id, reason=reason, now=rt.clock(), hubs=rt.hubs)
    log.warning("device %s retired: %s", Quoted(registration_id), Quoted(result.message))
    return 200, _result_json(result)


def _reinstate(req: func.HttpRequest) -> tuple[int, dict[str, Any]]:
    registration_id = _registration_id(req)
    rt = get_runtime()
    result = reinstate(rt.store, registration_id, now=rt.clock(), hubs=rt.hubs)
    log.warning("device %s reinstated: %s", Quoted(registration_id), Quoted(result.message))
    return 200, _result_json(result)


# -- input ---------------------------------------------------------------------------------------


def _registration_id(req: func.HttpRequest) -> str:
    value = str(req.route_params.get("registrationId") or "")
    if not value.strip():
        raise BadRequest("registrationId: expected a non-empty registration id in the path")
    return value


def _limit(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_HISTORY
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"limit: expected an integer 1..{MAX_HISTORY}, got {text!r}") from None
    if not 1 <= value <= MAX_HISTORY:
        raise BadRequest(f"limit: expected an integer 1..{MAX_HISTORY}, got {value}")
    return value


def _reason(req: func.HttpRequest) -> str | None:
    body = req.get_body()
    if not body or not body.strip():
        return None
    try:
        data = strict_json.decode(body, max_bytes=MAX_BODY_BYTES, max_depth=MAX_BODY_DEPTH)
    except RequestError as error:
        if error.field != "body":
            raise BadRequest(str(error)) from None
        raise BadRequest(
            f'body: expected a JSON object like {{"reason": "..."}} ({error.expected})'
        ) from None
    if not isinstance(data, dict):
        raise BadRequest('body: expected a JSON object like {"reason": "..."}')
    reason = data.get("reason")
    if reason is None:
        return None
    if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
        raise BadRequest(f"reason: expected a string of at most {MAX_REASON_CHARS} characters")
    return reason


# -- output --------------------------------------------------------------------------------------


def _device_json(device: DeviceRecord) -> dict[str, Any]:
    data = device_to_dict(device)
    data.pop("counted", None)  # internal idempotence bookkeeping
    return data


def _result_json(result: RetireResult) -> dict[str, Any]:
    return {
        "device": _device_json(result.device),
        "hub": result.hub,
        "hub_touched": result.hub_touched,
        "message": result.message,
    }


def _json(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body), status_code=status, mimetype="application/json", headers=headers
    )


def _respond(handler: Callable[[], tuple[int, dict[str, Any]]]) -> func.HttpResponse:
    """Run a handler and turn every failure into a JSON answer (no traceback leaves the function)."""
    try:
        status, body = handler()
    except (BadRequest, InvalidKey) as exc:
        return _json(400, {"error": str(exc)})
    except DeviceNotFound as exc:
        return _json(404, {"error": str(exc)})
    except SettingsError as exc:
        log.error("admin API misconfigured: %s", Quoted(str(exc)))
        return _json(500, {"error": "store is not configured; see the function log"})
    except StoreUnavailable as exc:
        log.warning("admin API: store unavailable: %s", Quoted(str(exc)))
        return _json(503, {"error": "store unavailable, retry later"}, {"Retry-After": "5"})
    except StoreError as exc:
        log.error("admin API: store error: %s", Quoted(str(exc)))
        return _json(503, {"error": "store error, retry later"}, {"Retry-After": "5"})
    except Exception:
        log.exception("admin API: unexpected error")
        return _json(500, {"error": "internal error; see the function log"})
    return _json(status, body)
