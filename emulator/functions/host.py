"""A local Azure Functions host for this repository's Python v2 app, without Core Tools.

It serves whatever `app.get_functions()` declares, generically:

- HTTP triggers at `/{route_prefix}/{route}` (prefix `api`; route templates with `{name}`,
  `{name?}`, `{name:constraint}` and a trailing `{*rest}`), for the trigger's methods (all when
  unset). Auth level FUNCTION accepts the function key or the master key, ADMIN only the master
  key, ANONYMOUS anything; the key comes from `?code=` or the `x-functions-key` header. A missing
  or wrong key is answered 401 before the function runs, as Azure does (Core Tools does not
  check keys; DPS maps that 401 to 400209, so the emulator must).
- Event Grid triggers at `POST /runtime/webhooks/EventGrid?functionName=<name>&code=<key>` with
  the status codes of the Event Grid extension (docs/protocol/lifecycle-events.md §7). As on Azure,
  the key is the host's Event Grid system key (`eventgrid_extension`) or the master key; without
  it, 401 before anything runs. `aeg-event-type` is compared case-insensitively:

      aeg-event-type: SubscriptionValidation   200 {"validationResponse": <validationCode>}
      aeg-event-type: Notification             202 when every event's invocation succeeds,
                                               500 when any fails (Event Grid re-sends the batch)
      aeg-event-type: Unsubscribe              202
      header missing or another value          400
      unknown functionName                     404


- `GET /admin/host/status` (master key), as on Azure: `{"state": "Running"}`, or
  `{"state": "Error", "errors": [...]}` when the app's readiness check (given as `readiness`)
  finds a problem now: storage gone, a policy file broken since the start. The doctor reads it.

Requests become `func.HttpRequest` / `func.EventGridEvent`; an `HttpResponse` (or a str/bytes
body) goes back as is. A function that raises gives 500 with an empty body: the traceback goes
to the log, never to the client. The request's query string (it carries the key) is never
logged. Async functions run on a private event loop in the request's thread.

The server is `web.server`'s (Starlette's request handling on uvicorn) on the emulator's event
loop; each invocation runs in a worker thread, so the loop never blocks on a function (the Tables
and IoT Hub SDKs the app uses are blocking).

Errors:

    FunctionsHostError    the app cannot be loaded or served (names the module or the port)
"""

from __future__ import annotations

import asyncio
import hmac
import importlib
import inspect
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import anyio.to_thread
import azure.functions as func
from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from allocation.errors import RequestError
from allocation.strict_json import decode
from devtools.files import write_private
from devtools.keys import new_token
from emulator.web.server import HttpLimits, HttpServer, Limits, bind

__all__ = [
    "FunctionsHost",
    "FunctionsHostError",
    "HttpRoute",
    "load_function_app",
    "state_key",
]

log = logging.getLogger(__name__)

DEFAULT_PORT = 7071
MAX_BODY_BYTES = 100 * 1024 * 1024  # Azure Functions' request size limit
EVENT_GRID_PATH = "/runtime/webhooks/eventgrid"
HOST_STATUS_PATH = "/admin/host/status"


class FunctionsHostError(Exception):
    """The Functions app cannot be loaded or served."""


@dataclass(frozen=True, kw_only=True)
class HttpRoute:
    """One HTTP-triggered function as the host serves it."""

    function_name: str
    template: str
    pattern: re.Pattern[str]
    methods: frozenset[str] | None
    auth_level: str
    arg_name: str
    call: Callable[..., Any] = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class _EventGridFunction:
    function_name: str
    arg_name: str
    call: Callable[..., Any] = field(repr=False)


def load_function_app(module: str = "function_app", attribute: str = "app") -> func.FunctionApp:
    """Import `module` and return its FunctionApp (`function_app.app` by default)."""
    try:
        loaded = importlib.import_module(module)
    except ImportError as error:
        raise FunctionsHostError(f"{module}: cannot be imported ({error})") from None
    app = getattr(loaded, attribute, None)
    if not isinstance(app, func.FunctionApp):
        raise FunctionsHostError(f"{module}.{attribute}: expected an azure.functions.FunctionApp")
    return app


def state_key(state_dir: Path, name: str, given: str | None = None) -> tuple[str, bool]:
    """A key kept in `<state_dir>/<name>` (0600): `given`, the stored one, or a new one.

    Returns `(key, generated)`; the caller prints a generated key once (never log it).
    A `given` key is used as is and not stored.
    """
    if given:
        return given, False
    path = state_dir / name
    if path.exists():
        stored = path.read_text(encoding="utf-8").strip()
        if stored:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)  # a key file others can read is made private, not trusted as is
            return stored, False
    key = new_token(32)
    state_dir.mkdir(parents=True, exist_ok=True)
    write_private(path, key + "\n")
    return key, True


def _compile_route(template: str) -> re.Pattern[str]:
    parts: list[str] = []
    for segment in template.strip("/").split("/"):
        match = re.fullmatch(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(\?)?(?::[^}]*)?\}", segment)
        if match is None:
            parts.append("/" + re.escape(segment))
        elif match.group(1):
            parts.append(f"(?:/(?P<{match.group(2)}>.*))?")
        elif match.group(3):
            parts.append(f"(?:/(?P<{match.group(2)}>[^/]+))?")
        else:
            parts.append(f"/(?P<{match.group(2)}>[^/]+)")
    return re.compile("".join(parts) + "/?", re.IGNORECASE)


def index_functions(app: func.FunctionApp) -> list[Any]:
    """``app.get_functions()``, callable more than once per app object.

    azure-functions records every name it has indexed on the app (``functions_bindings``) and
    reports all of them as duplicates on a second call; the real host indexes once per worker.
    Several indexers share one process here (tests, the local host), so start from a clean record.
    """
    app.functions_bindings = {}
    return list(app.get_functions())


def _routes(
    app: func.FunctionApp, route_prefix: str
) -> tuple[list[HttpRoute], dict[str, _EventGridFunction]]:
    routes: list[HttpRoute] = []
    event_grid: dict[str, _EventGridFunction] = {}
    prefix = route_prefix.strip("/")
    for function in index_functions(app):
        trigger: Any = function.get_trigger()  # HttpTrigger | EventGridTrigger | ...; untyped here
        name = str(function.get_function_name())
        if trigger is None:
            continue
        call = function.get_user_function()
        kind = trigger.get_binding_name()
        if kind == "httpTrigger":
            template = trigger.route if trigger.route is not None else name
            methods = (
                frozenset(str(getattr(m, "value", m)).upper() for m in trigger.methods)
                if trigger.methods
                else None
            )
            level = str(getattr(trigger.auth_level, "value", trigger.auth_level) or "FUNCTION")
            routes.append(
                HttpRoute(
                    function_name=name,
                    template=template,
                    pattern=_compile_route(f"{prefix}/{template}" if prefix else template),
                    methods=methods,
                    auth_level=level.upper(),
                    arg_name=trigger.name,
                    call=call,
                )
            )
        elif kind == "eventGridTrigger":
            event_grid[name.lower()] = _EventGridFunction(
                function_name=name, arg_name=trigger.name, call=call
            )
        else:
            log.warning("function %s: trigger %s is not served by the local host", name, kind)
    return routes, event_grid


def _invoke(call: Callable[..., Any], argument_name: str, argument: object) -> Any:
    result = call(**{argument_name: argument})
    if inspect.isawaitable(result):
        return asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _event_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    match = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?", value)
    if match is None:
        return None
    fraction = (match.group(2) or "0")[:6].ljust(6, "0")
    zone = match.group(3) or "+00:00"
    try:
        return datetime.fromisoformat(f"{match.group(1)}.{fraction}{zone.replace('Z', '+00:00')}")
    except ValueError:
        return None


def _to_event(raw: Mapping[str, Any]) -> func.EventGridEvent:
    return func.EventGridEvent(
        id=str(raw.get("id", "")),
        data=raw.get("data") or {},
        topic=str(raw.get("topic", "")),
        subject=str(raw.get("subject", "")),
        event_type=str(raw.get("eventType", "")),
        event_time=_event_time(raw.get("eventTime")),
        data_version=str(raw.get("dataVersion", "")),
    )


@dataclass(frozen=True, kw_only=True)
class _Reply:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


def _json_reply(status: int, value: object) -> _Reply:
    return _Reply(
        status=status,
        body=json.dumps(value).encode("utf-8"),
        headers=(("Content-Type", "application/json; charset=utf-8"),),
    )


class FunctionsHost:
    """Serve a FunctionApp's HTTP and Event Grid triggers on 127.0.0.1 (port 7071 by default)."""

    def __init__(
        self,
        app: func.FunctionApp,
        *,
        function_key: str,
        master_key: str | None = None,
        system_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        route_prefix: str = "api",
        readiness: Callable[[], Sequence[object]] = lambda: (),
    ) -> None:
        self._routes, self._event_grid = _routes(app, route_prefix)
        self._readiness = readiness
        self._function_key = function_key
        self._master_key = master_key
        self._system_key = system_key
        self._address = (host, port)
        self._server: HttpServer | None = None

    @property
    def routes(self) -> tuple[HttpRoute, ...]:
        """The HTTP routes served, in declaration order."""
        return tuple(self._routes)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._server is None:
            raise FunctionsHostError("the Functions host is not started")
        return self._server.ports[0]

    @property
    def base_url(self) -> str:
        """`http://host:port` of the running host."""
        return f"http://{self._address[0]}:{self.port}"

    async def start(self) -> None:
        """Bind and serve on the running event loop."""
        try:
            sock = bind(*self._address)
        except OSError as error:
            raise FunctionsHostError(
                f"cannot listen on {self._address[0]}:{self._address[1]} ({error.strerror})"
            ) from None
        limits = HttpLimits(max_body_bytes=MAX_BODY_BYTES, body_timeout=120.0)
        app = Limits(
            self._asgi,
            limits=limits,
            error=lambda status, _code, _text: Response(status_code=status),
        )
        self._server = HttpServer(app, sockets=[sock], limits=limits, name="functions")
        await self._server.start()
        log.info(
            "functions host on %s: %s",
            self.base_url,
            ", ".join(f"/{route.template}" for route in self._routes) or "no HTTP routes",
        )

    async def close(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            await self._server.close()
            self._server = None

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = HttpRequest(scope, receive)
        target = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        headers = {name.lower(): value for name, value in request.headers.items()}
        body = await request.body()
        try:
            reply = await anyio.to_thread.run_sync(
                self.handle, scope["method"], target, headers, body
            )
        except Exception:
            log.exception("functions host: internal error")
            reply = _Reply(status=500)
        response = Response(content=reply.body, status_code=reply.status)
        for name, value in reply.headers:
            response.headers[name] = value
        await response(scope, receive, send)

    # -- request handling (runs in the server's request threads) -------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        """Answer one request; `target` is the request line's path and query."""
        parts = urlsplit(target)
        path = unquote(parts.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if path.lower().rstrip("/") == EVENT_GRID_PATH and method == "POST":
            return self._event_grid_request(query, headers, body)
        if path.lower().rstrip("/") == HOST_STATUS_PATH and method == "GET":
            if not self._authorized("ADMIN", query, headers):
                return _Reply(status=401)
            errors = [str(problem) for problem in self._readiness()]
            state = {"state": "Error", "errors": errors} if errors else {"state": "Running"}
            return _json_reply(200, state)
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if route.methods is not None and method not in route.methods:
                continue
            if not self._authorized(route.auth_level, query, headers):
                log.info("functions host: %s %s -> 401", method, path)
                return _Reply(status=401)
            return self._http_request(
                route,
                method=method,
                target=target,
                query=query,
                match=match,
                headers=headers,
                body=body,
            )
        log.info("functions host: %s %s -> 404", method, path)
        return _Reply(status=404)

    def _authorized(self, level: str, query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
        if level == "ANONYMOUS":
            return True
        presented = query.get("code") or headers.get("x-functions-key") or ""
        accepted = (
            [self._master_key] if level == "ADMIN" else [self._function_key, self._master_key]
        )
        matched = False
        for key in accepted:
            if key and hmac.compare_digest(presented.encode(), key.encode()):
                matched = True
        return matched

    def _http_request(
        self,
        route: HttpRoute,
        *,
        method: str,
        target: str,
        query: Mapping[str, str],
        match: re.Match[str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> _Reply:
        request = func.HttpRequest(
            method,
            f"http://{headers.get('host', '127.0.0.1')}{target}",
            headers=dict(headers),
            params=dict(query),
            route_params={k: v for k, v in match.groupdict().items() if v is not None},
            body=body,
        )
        try:
            result = _invoke(route.call, route.arg_name, request)
        except Exception:
            log.exception("function %s raised", route.function_name)
            return _Reply(status=500)
        reply = _from_result(result)
        log.info("functions host: %s /%s -> %d", method, route.template, reply.status)
        return reply

    def _event_grid_request(
        self, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> _Reply:
        presented = query.get("code") or headers.get("x-functions-key") or ""
        if not any(
            key and hmac.compare_digest(presented.encode(), key.encode())
            for key in (self._system_key, self._master_key)
        ):
            log.info("functions host: Event Grid request without the system key -> 401")
            return _Reply(status=401)
        name = query.get("functionName", "")
        function = self._event_grid.get(name.lower())
        if function is None:
            return _json_reply(404, {"error": f"cannot find function: '{name}'"})
        kinds = {"subscriptionvalidation": "SubscriptionValidation", "notification": "Notification"}
        kinds["unsubscribe"] = "Unsubscribe"
        kind = kinds.get(headers.get("aeg-event-type", "").lower(), "")
        if not kind:
            return _json_reply(400, {"error": "aeg-event-type header missing or not supported"})
        if kind == "Unsubscribe":
            return _Reply(status=202)
        try:
            parsed = decode(body, max_bytes=MAX_BODY_BYTES)
        except RequestError as error:
            return _json_reply(400, {"error": str(error)})
        events = parsed if isinstance(parsed, list) else [parsed]
        if not all(isinstance(event, dict) for event in events):
            return _json_reply(400, {"error": "body: expected an event or an array of events"})
        if kind == "SubscriptionValidation":
            data = events[0].get("data") if events else None
            code = data.get("validationCode") if isinstance(data, dict) else None
            return _json_reply(200, {"validationResponse": code})
        failures = 0
        for raw in events:
            try:
                _invoke(function.call, function.arg_name, _to_event(raw))
            except Exception:
                failures += 1
                log.exception(
                    "function %s raised on event %s", function.function_name, raw.get("id")
                )
        status = 500 if failures else 202
        log.info(
            "functions host: Event Grid %s, %d event(s) -> %d",
            function.function_name,
            len(events),
            status,
        )
        return _Reply(status=status)


def _from_result(result: object) -> _Reply:
    if isinstance(result, func.HttpResponse):
        headers = dict(result.headers)
        if not any(name.lower() == "content-type" for name in headers):
            mimetype = result.mimetype or "text/plain"
            charset = result.charset or "utf-8"
            headers["Content-Type"] = f"{mimetype}; charset={charset}"
        return _Reply(
            status=result.status_code, body=result.get_body() or b"", headers=tuple(headers.items())
        )
    if isinstance(result, str | bytes):
        body = result.encode("utf-8") if isinstance(result, str) else result
        return _Reply(
            status=200, body=body, headers=(("Content-Type", "text/plain; charset=utf-8"),)
        )
    if result is None:
        return _Reply(status=204)
    log.error("HTTP function returned %s; expected an HttpResponse", type(result).__name__)
    return _Reply(status=500)
