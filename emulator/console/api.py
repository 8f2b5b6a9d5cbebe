"""The console's routes: its page and assets, its JSON API and its event stream (a Starlette app).

    GET    /                                   the page (one HTML file; views are drawn by
                                               `static/console.js` from the API below)
    GET    /static/{name}                      the page's script, style sheet and icon
    GET    /api/stream?hub=H&device=D          server-sent events: JSON arrays of what happens
                                               (`feed`); telemetry only of hub H (device D), at
                                               most 200 messages a batch (the others counted)
    *      /api/admin/{path}                   the operator API (`operator.api`), in-process: the
                                               same handlers as `python -m emulator <command>`
    GET    /api/exchanges?registration_id=R    the last webhook exchanges DPS made
    GET    /api/telemetry/{hub}/{device}       the newest messages in the hub's log
    PATCH  /api/twins/{hub}/{device}           {"tags"?, "desired"?, "etag"}: the service API's
                                               twin PATCH with If-Match (412 when it moved on)
    POST   /api/methods/{hub}/{device}         {"method_name", "payload"?, "timeout"?}
    POST   /api/policy/decide                  {"registration_id", "payload"?, "enrollment"?,
                                               "current_hub"?}: the hosted app's decision
    POST   /api/policy/moves                   {"template", "count", "add"|"drain",
                                               "enrollment"?}: what moves
    GET    /api/log/devices                    the inventory (the Functions app's admin route)
    GET    /api/log/devices/{id}?limit=N       one device's registration log (empty when none)
    GET    /api/log/rules                      devices per rule, from the registration log
    GET    /api/info                           what is running: hubs, the app, the policy file

Answers are JSON objects; errors are `{"error": {"code", "message"}}` with 400 (a field named),
404, 412, 503 (a part that is not running), and never a 5xx for bad input. Bodies are strict JSON
(`allocation.strict_json`). Authentication is `server`'s, around this app.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from allocation import Policy
from allocation.errors import PolicyError, RequestError
from allocation.strict_json import decode
from emulator.activity import ActivityEvent
from emulator.console.feed import Feed, Gap
from emulator.console.policy_lab import (
    MAX_SYNTHETIC,
    LabError,
    Question,
    decide_command,
    hub_moves,
    try_policy,
)
from emulator.console.sources import FunctionsCalls, OperatorCalls, ServiceCalls, Unavailable
from emulator.hub.messages import TelemetryMessage

__all__ = ["ConsoleApi", "ConsoleError", "PolicyView"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_STREAMS = 32
TELEMETRY_SHOWN = 200
TELEMETRY_PER_BATCH = 200  # a stream converts at most this many messages a batch; the rest counted
BODY_SHOWN = 4096  # bytes of a message body sent to the page
RULE_SAMPLE = 500  # devices whose latest log row is read for "devices per rule"
LOG_CONCURRENCY = 8
STATIC_TYPES = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the first URL carries the token
    "Cache-Control": "no-store",
}


class ConsoleError(Exception):
    """A request the console answers with an error status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class PolicyView:
    """The hosted app's policy: how to load it (once, as the app does) and its file's name."""

    load: Callable[[], Policy]
    file: str  # as ALLOCATION_POLICY_FILE names it, for the equivalent command


def error_json(status: int, code: str, message: str) -> Response:
    """The one shape of an error answer."""
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=SECURITY_HEADERS
    )


def _json(body: Mapping[str, Any], status: int = 200) -> Response:
    return JSONResponse(dict(body), status_code=status, headers=SECURITY_HEADERS)


Endpoint = Callable[[Request], Awaitable[Response]]


class ConsoleApi:
    """The console's Starlette app (`app`), over the seams of `sources`."""

    def __init__(
        self,
        *,
        feed: Feed,
        operator: OperatorCalls,
        service: ServiceCalls | None,
        functions: FunctionsCalls | None,
        policy: PolicyView | None,
        info: Mapping[str, Any],
    ) -> None:
        self._feed = feed
        self._operator = operator
        self._service = service
        self._functions = functions
        self._policy = policy
        self._info = dict(info)
        self._rules_cache: dict[tuple[str, str], str | None] = {}
        self._static = {name: _asset(name) for name in STATIC_TYPES}
        self._page = _asset("index.html")
        routes = [
            Route("/", self._guard(self._index), methods=["GET"]),
            Route("/static/{name}", self._guard(self._asset), methods=["GET"]),
            Route("/api/stream", self._stream, methods=["GET"]),
            Route(
                "/api/admin/{path:path}",
                self._guard(self._admin),
                methods=["GET", "POST", "PUT", "DELETE"],
            ),
            Route("/api/info", self._guard(self._info_route), methods=["GET"]),
            Route("/api/exchanges", self._guard(self._exchanges), methods=["GET"]),
            Route("/api/telemetry/{hub}/{device}", self._guard(self._telemetry), methods=["GET"]),
            Route("/api/twins/{hub}/{device}", self._guard(self._twin), methods=["PATCH"]),
            Route("/api/methods/{hub}/{device}", self._guard(self._method), methods=["POST"]),
            Route("/api/policy/decide", self._guard(self._decide), methods=["POST"]),
            Route("/api/policy/moves", self._guard(self._moves), methods=["POST"]),
            Route("/api/log/devices", self._guard(self._log_devices), methods=["GET"]),
            Route("/api/log/devices/{id}", self._guard(self._log_device), methods=["GET"]),
            Route("/api/log/rules", self._guard(self._log_rules), methods=["GET"]),
        ]
        self.app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})

    @staticmethod
    def _guard(handler: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except ConsoleError as error:
                return error_json(error.status, error.code, error.message)
            except LabError as error:
                return error_json(400, "BadField", str(error))
            except Unavailable as error:
                return error_json(503, "Unavailable", str(error))

        return guarded

    # -- page ----------------------------------------------------------------------------------

    async def _index(self, request: Request) -> Response:
        return Response(self._page, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    async def _asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self._static:
            raise ConsoleError(404, "NotFound", f"{name}: no such asset")
        return Response(self._static[name], media_type=STATIC_TYPES[name], headers=SECURITY_HEADERS)

    async def _info_route(self, request: Request) -> Response:
        return _json(
            {
                **self._info,
                "functions": self._functions is not None,
                "policy_file": self._policy.file if self._policy is not None else None,
                "streams": self._feed.streams,
            }
        )

    # -- live ----------------------------------------------------------------------------------

    async def _stream(self, request: Request) -> Response:
        if self._feed.streams >= MAX_STREAMS:
            return error_json(503, "TooManyStreams", f"at most {MAX_STREAMS} open pages")
        hub = request.query_params.get("hub") or None
        device = request.query_params.get("device") or None
        feed = self._feed

        async def events() -> AsyncIterator[bytes]:
            yield b"retry: 2000\n\n"
            async for batch in feed.follow():
                if batch is None:
                    yield b": idle\n\n"
                    continue
                items = _items(batch, hub, device)
                if items:
                    yield b"data: " + json.dumps(items).encode("utf-8") + b"\n\n"

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"},
        )

    async def _exchanges(self, request: Request) -> Response:
        wanted = (request.query_params.get("registration_id") or "").lower()
        entries = [
            _exchange_json(event)
            for event in self._feed.exchanges()
            if not wanted or str(event.fields.get("registration_id", "")).lower() == wanted
        ]
        return _json({"exchanges": entries})

    # -- the operator API ----------------------------------------------------------------------

    async def _admin(self, request: Request) -> Response:
        body = await request.body() if request.method in ("POST", "PUT") else None
        status, answer = await self._operator.call(
            request.method,
            quote(request.path_params["path"], safe="/"),
            query=request.url.query,
            body=body,
        )
        return _json(answer if isinstance(answer, dict) else {}, status)

    async def _telemetry(self, request: Request) -> Response:
        hub, device = request.path_params["hub"], request.path_params["device"]
        status, answer = await self._operator.call(
            "GET",
            f"hubs/{quote(hub, safe='')}/telemetry",
            query=f"since=0&device={quote(device, safe='')}",
        )
        if status != 200:
            return _json(answer, status)
        messages = answer["messages"][-TELEMETRY_SHOWN:]
        for message in messages:
            message["time"] = message.pop("enqueued_at")
            message["hub"] = hub
            if len(message.get("body", "")) > BODY_SHOWN:
                message["body"] = message["body"][:BODY_SHOWN]
                message["truncated"] = True
        return _json({"hub": answer["hub"], "messages": messages})

    # -- the service API -----------------------------------------------------------------------

    def _service_api(self) -> ServiceCalls:
        if self._service is None:
            raise Unavailable("the hubs' service API is not running")
        return self._service

    async def _twin(self, request: Request) -> Response:
        body = await _body(request)
        patch: dict[str, Any] = {}
        if "tags" in body:
            if not isinstance(body["tags"], dict):
                raise ConsoleError(400, "BadField", "tags: expected a JSON object")
            patch["tags"] = body["tags"]
        if "desired" in body:
            if not isinstance(body["desired"], dict):
                raise ConsoleError(400, "BadField", "desired: expected a JSON object")
            patch["properties"] = {"desired": body["desired"]}
        if not patch:
            raise ConsoleError(400, "BadField", "tags, desired: expected at least one of them")
        etag = body.get("etag")
        if not isinstance(etag, str) or not etag:
            raise ConsoleError(400, "BadField", "etag: expected the twin's etag as shown")
        status, answer = await self._service_api().patch_twin(
            request.path_params["hub"], request.path_params["device"], patch, etag
        )
        return _service_answer(status, answer, {"twin": answer})

    async def _method(self, request: Request) -> Response:
        body = await _body(request)
        name = body.get("method_name")
        if not isinstance(name, str) or not name or len(name) > 128:
            raise ConsoleError(400, "BadField", "method_name: expected 1 to 128 characters")
        timeout = body.get("timeout", 30)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 5 <= timeout <= 300:
            raise ConsoleError(400, "BadField", "timeout: expected 5 to 300 seconds")
        status, answer = await self._service_api().invoke(
            request.path_params["hub"],
            request.path_params["device"],
            name,
            body.get("payload"),
            timeout,
        )
        return _service_answer(status, answer, answer if isinstance(answer, dict) else {})

    # -- the policy ----------------------------------------------------------------------------

    async def _loaded_policy(self) -> tuple[Policy, PolicyView]:
        if self._policy is None:
            raise Unavailable(
                "the local cloud does not host the Functions app (run it with --host-functions, "
                "or `make up`): the playground asks the hosted app's policy"
            )
        try:
            return await asyncio.to_thread(self._policy.load), self._policy
        except PolicyError as error:
            raise ConsoleError(503, "PolicyNotLoaded", str(error)) from None

    async def _linked_hubs(self, wanted: object) -> tuple[list[str], str | None]:
        """The linked hubs and group id of the enrollment named `kind/id` (default: the first
        custom-allocation one, else the first)."""
        if wanted is not None and not isinstance(wanted, str):
            raise ConsoleError(
                400, "BadField", "enrollment: expected 'group/ID' or 'individual/ID'"
            )
        _, answer = await self._operator.call("GET", "enrollments")
        entries = answer.get("enrollments", []) if isinstance(answer, dict) else []
        if wanted:
            chosen = [e for e in entries if f"{e['kind']}/{e['id']}".lower() == wanted.lower()]
            if not chosen:
                raise ConsoleError(404, "NotFound", f"enrollment: no enrollment {wanted!r}")
        else:
            chosen = [e for e in entries if e["allocation"] == "custom"] or entries
        if not chosen:
            hubs = self._info.get("hubs", [])
            return list(hubs), None
        entry = chosen[0]
        return list(entry["hubs"]), entry["id"] if entry["kind"] == "group" else None

    async def _decide(self, request: Request) -> Response:
        body = await _body(request)
        policy, view = await self._loaded_policy()
        registration_id = body.get("registration_id")
        if not isinstance(registration_id, str):
            raise ConsoleError(400, "BadField", "registration_id: expected a string")
        current = body.get("current_hub")
        if current is not None and not isinstance(current, str):
            raise ConsoleError(400, "BadField", "current_hub: expected a hub host name")
        hubs, group = await self._linked_hubs(body.get("enrollment"))
        question = Question(
            registration_id=registration_id,
            linked_hubs=hubs,
            group=group,
            payload=body.get("payload"),
            current_hub=current or None,
        )
        decision = await asyncio.to_thread(try_policy, policy, question)
        return _json(
            {
                "decision": decision,
                "linked_hubs": hubs,
                "group": group,
                "command": decide_command(view.file, question),
            }
        )

    async def _moves(self, request: Request) -> Response:
        body = await _body(request)
        policy, _ = await self._loaded_policy()
        hubs, group = await self._linked_hubs(body.get("enrollment"))
        template, count = body.get("template"), body.get("count", 1000)
        add, drain = body.get("add") or None, body.get("drain") or None
        if not isinstance(template, str):
            raise ConsoleError(400, "BadField", "template: expected a string with {n}")
        for name, value in (("add", add), ("drain", drain)):
            if value is not None and not isinstance(value, str):
                raise ConsoleError(400, "BadField", f"{name}: expected a hub host name")
        if isinstance(count, bool) or not isinstance(count, int):
            raise ConsoleError(400, "BadField", f"count: expected 1 to {MAX_SYNTHETIC}")
        result = await asyncio.to_thread(
            lambda: hub_moves(
                policy,
                template=template,
                count=count,
                linked_hubs=hubs,
                group=group,
                add=add,
                drain=drain,
            )
        )
        return _json({**result, "group": group})

    # -- the registration log (Table storage, through the Functions app) ------------------------

    def _app(self) -> FunctionsCalls:
        if self._functions is None:
            raise Unavailable(
                "the local cloud does not host the Functions app (run it with --host-functions, "
                "or `make up`): the registration log is read through its admin routes"
            )
        return self._functions

    async def _log_devices(self, request: Request) -> Response:
        query = "&".join(
            f"{name}={quote(value, safe='')}"
            for name in ("hub", "status")
            if (value := request.query_params.get(name))
        )
        status, answer = await self._app().get("devices" + (f"?{query}" if query else ""))
        return _function_answer(status, answer)

    async def _log_device(self, request: Request) -> Response:
        limit = request.query_params.get("limit") or "20"
        if not limit.isdigit():
            raise ConsoleError(400, "BadQuery", "limit: expected a whole number")
        status, answer = await self._app().get(
            f"devices/{quote(request.path_params['id'], safe='')}?limit={limit}"
        )
        if status == 404:  # never logged (denied before the app, or not custom allocation)
            return _json({"device": None, "registrations": []})
        return _function_answer(status, answer)

    async def _log_rules(self, request: Request) -> Response:
        functions = self._app()
        status, answer = await functions.get("devices?status=active")
        if status != 200 or not isinstance(answer, dict):
            return _function_answer(status, answer)
        devices = sorted(
            answer.get("devices", []),
            key=lambda device: str(device.get("last_provisioned") or ""),
            reverse=True,
        )
        sample = devices[:RULE_SAMPLE]
        gate = asyncio.Semaphore(LOG_CONCURRENCY)

        async def rule_of(device: Mapping[str, Any]) -> tuple[str | None, str | None]:
            key = (str(device.get("registration_id")), str(device.get("last_provisioned")))
            if key not in self._rules_cache:
                async with gate:
                    found, history = await functions.get(
                        f"devices/{quote(key[0], safe='')}?limit=5"
                    )
                rows = history.get("registrations", []) if isinstance(history, dict) else []
                assigned = [row for row in rows if row.get("outcome") == "assigned"]
                if found != 200:
                    return device.get("hub"), None
                self._rules_cache[key] = assigned[0].get("rule") if assigned else None
                while len(self._rules_cache) > 4 * RULE_SAMPLE:
                    self._rules_cache.pop(next(iter(self._rules_cache)))
            return device.get("hub"), self._rules_cache.get(key)

        pairs = await asyncio.gather(*(rule_of(device) for device in sample))
        counts: dict[tuple[str, str], int] = {}
        for hub, rule in pairs:
            name = (str(hub or "(none)"), str(rule or "(unknown)"))
            counts[name] = counts.get(name, 0) + 1
        return _json(
            {
                "devices": len(devices),
                "sampled": len(sample),
                "counts": [
                    {"hub": hub, "rule": rule, "devices": n}
                    for (hub, rule), n in sorted(counts.items())
                ],
            }
        )


def _asset(name: str) -> bytes:
    return (resources.files("emulator.console") / "static" / name).read_bytes()


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        value = decode(raw, max_bytes=MAX_BODY_BYTES)
    except RequestError as error:
        raise ConsoleError(400, "BadJson", f"{error}; expected a JSON object") from None
    if not isinstance(value, dict):
        raise ConsoleError(400, "BadJson", "body: expected a JSON object")
    return value


def _service_answer(status: int, answer: Any, good: Mapping[str, Any]) -> Response:
    """The service API's answer for the page: as it is, or its error in the console's shape."""
    if 200 <= status < 300:
        return _json(good, status)
    message = answer.get("Message", "") if isinstance(answer, dict) else ""
    code, _, text = str(message).removeprefix("ErrorCode:").partition(";")
    return error_json(status, code or "ServiceError", text or f"the hub answered {status}")


def _function_answer(status: int, answer: Any) -> Response:
    if 200 <= status < 300 and isinstance(answer, dict):
        return _json(answer, status)
    text = answer.get("error") if isinstance(answer, dict) else None
    code = 503 if status >= 500 else status
    return error_json(code, "RegistrationLog", str(text or f"the Functions app answered {status}"))


async def _http_error(request: Request, error: Exception) -> Response:
    status = error.status_code if isinstance(error, HTTPException) else 500
    if status == 405:
        return error_json(405, "MethodNotAllowed", f"{request.method}: not allowed here")
    return error_json(404, "NotFound", f"{request.url.path}: no such console route")


def _body_text(body: bytes) -> dict[str, Any]:
    shown = body[:BODY_SHOWN]
    try:
        entry: dict[str, Any] = {"body": shown.decode("utf-8")}
    except UnicodeDecodeError:
        entry = {"body_base64": base64.b64encode(shown).decode("ascii")}
    if len(body) > BODY_SHOWN:
        entry["truncated"] = True
    return entry


def _exchange_json(event: ActivityEvent) -> dict[str, Any]:
    fields = event.fields
    answer = fields.get("answer")
    try:
        parsed = json.loads(answer) if isinstance(answer, str) else None
    except ValueError:
        parsed = None
    return {
        "kind": "dps.webhook",
        "time": event.time,
        "registration_id": fields.get("registration_id"),
        "attempt": fields.get("attempt"),
        "status": fields.get("status"),
        "latency_ms": fields.get("latency_ms"),
        "request": fields.get("request"),
        "answer": parsed if parsed is not None else answer,
        "error": fields.get("error"),
    }


def _items(batch: list[ActivityEvent | Gap], hub: str | None, device: str | None) -> list[Any]:
    """A batch for the page: every event it wants, but of a flood of telemetry only the newest
    `TELEMETRY_PER_BATCH` messages, the others counted (`hub.telemetry.skipped`): a page shows
    the newest anyway, and a fast device must not cost the emulator a conversion per message."""
    wanted = [event for event in batch if _wanted(event, hub, device)]
    telemetry = sum(1 for event in wanted if getattr(event, "kind", "") == "hub.telemetry")
    skip = max(0, telemetry - TELEMETRY_PER_BATCH)
    items: list[Any] = []
    if skip:
        items.append({"kind": "hub.telemetry.skipped", "hub": hub, "count": skip})
    for event in wanted:
        if skip and getattr(event, "kind", "") == "hub.telemetry":
            skip -= 1
            continue
        item = _item(event, hub, device)
        if item is not None:
            items.append(item)
    return items


def _wanted(event: ActivityEvent | Gap, hub: str | None, device: str | None) -> bool:
    if isinstance(event, Gap) or event.kind != "hub.telemetry":
        return True
    message = event.fields.get("message")
    return (
        hub is not None
        and isinstance(message, TelemetryMessage)
        and str(event.fields.get("hub", "")).lower() == hub.lower()
        and (device is None or message.device_id == device)
    )


def _item(event: ActivityEvent | Gap, hub: str | None, device: str | None) -> dict[str, Any] | None:
    """One event as the page gets it, or None when this stream does not want it."""
    if isinstance(event, Gap):
        return {"kind": "gap", "missed": event.missed}
    fields = event.fields
    kind = event.kind
    if kind == "dps.webhook":
        return _exchange_json(event)
    if kind == "dps.reply":
        segments = str(fields.get("topic", "")).split("/")
        status = int(segments[3]) if len(segments) > 3 and segments[3].isdigit() else None
        return {
            "kind": kind,
            "time": event.time,
            "registration_id": fields.get("client_id"),
            "status": status,
            "body": fields.get("body"),
        }
    if kind == "hub.telemetry":
        message = fields.get("message")
        if hub is None or not isinstance(message, TelemetryMessage):
            return None
        if str(fields.get("hub", "")).lower() != hub.lower():
            return None
        if device is not None and message.device_id != device:
            return None
        return {
            "kind": kind,
            "time": event.time,
            "hub": fields.get("hub"),
            "seq": fields.get("seq"),
            "device_id": message.device_id,
            "properties": dict(message.properties),
            "system_properties": dict(message.system_properties),
            **_body_text(message.body),
        }
    if kind in ("hub.changed", "hub.lifecycle"):
        return {"kind": kind, "time": event.time, **{k: v for k, v in fields.items()}}
    return None


def static_dir() -> Path:
    """Where the page's files are (for the repository's own checks)."""
    return Path(str(resources.files("emulator.console") / "static"))
