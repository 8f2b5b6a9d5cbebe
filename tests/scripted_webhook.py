"""A scripted webhook over real HTTP: the one stand-in for an allocation function in the tests.

`ScriptedWebhook(bind)` is a `ThreadingHTTPServer` on a free port of a loopback address. It records
every POST (`received`; `requests` holds their JSON bodies) and answers from scripts: a list of
`(status, JSON body or None)` per path (`by_path`, the path without its query) or per the body's
`deviceRuntimeContext.registrationId` (`by_registration`), the path's first. Each reply of a script
is used once, the last one for good; an unscripted request gets 404. With `key`, a request whose
query is not `code=<key>` gets 401, as from a function's key check. Requests to a path in `stalled`
are held until `release` is set (or 5 s), as by a hung function; leaving the `with` block sets it.
With `validates`, it is also an Event Grid endpoint: a POST with `aeg-event-type:
SubscriptionValidation` gets 200 `{"validationResponse": <data.validationCode>}` (after the key
check), as the Functions Event Grid trigger answers; `notifications` are the event arrays posted.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Reply = tuple[int, Any]
"""(HTTP status, JSON body, or None for an empty body)."""

NOT_SCRIPTED: Reply = (404, None)
STALL_LIMIT = 5.0  # seconds a stalled request waits at most for `release`


class _QuietServer(ThreadingHTTPServer):
    """A caller that gave up on a stalled request (the emulator's webhook timeout) closes its end
    before the reply: that is what the timeout tests do, not an error worth a traceback on stderr.
    Anything else is still printed."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
            super().handle_error(request, client_address)


@dataclass(frozen=True)
class Received:
    """One POST as it arrived: the path with its query, the headers, the raw body."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON, or None if it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass
class ScriptedWebhook:
    """A real HTTP server on `bind` answering scripted replies (see the module docstring)."""

    bind: str = "127.0.0.1"
    key: str | None = None
    by_path: dict[str, list[Reply]] = field(default_factory=dict)
    by_registration: dict[str, list[Reply]] = field(default_factory=dict)
    stalled: set[str] = field(default_factory=set)
    validates: bool = False
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = _QuietServer((self.bind, 0), _handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), daemon=True
        )

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        """The allocation function's URL, with `?code=<key>` when there is a key."""
        query = f"?code={self.key}" if self.key is not None else ""
        return self.url_for(f"/api/allocate{query}")

    def url_for(self, path: str) -> str:
        """The URL of `path` (a path and, if any, its query) on this server."""
        return f"http://{self.bind}:{self.port}{path}"

    @property
    def requests(self) -> list[Any]:
        """The JSON bodies received, in order."""
        return [request.json() for request in self.received]

    @property
    def notifications(self) -> list[Any]:
        """The bodies of the Event Grid `Notification` POSTs received, in order."""
        return [
            request.json()
            for request in self.received
            if request.headers.get("aeg-event-type") == "Notification"
        ]

    def requests_for(self, registration_id: str) -> list[dict[str, Any]]:
        """The JSON bodies received for one registration id, in order."""
        return [body for body in self.requests if _registration_id(body) == registration_id]

    def answer(self, request: Received) -> Reply:
        """Record `request` and pick its reply."""
        with self._lock:
            self.received.append(request)
        split = urlsplit(request.path)
        if self.key is not None and parse_qs(split.query).get("code") != [self.key]:
            return 401, None
        if self.validates and request.headers.get("aeg-event-type") == "SubscriptionValidation":
            return 200, {"validationResponse": _validation_code(request.json())}
        if split.path in self.stalled:
            self.release.wait(STALL_LIMIT)
        with self._lock:
            script = self.by_path.get(split.path)
            if script is None:
                script = self.by_registration.get(_registration_id(request.json()) or "")
            if not script:
                return NOT_SCRIPTED
            return script.pop(0) if len(script) > 1 else script[0]

    def __enter__(self) -> ScriptedWebhook:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _registration_id(body: Any) -> str | None:
    """`deviceRuntimeContext.registrationId` of an AllocationRequest, if the body has one."""
    context = body.get("deviceRuntimeContext") if isinstance(body, dict) else None
    found = context.get("registrationId") if isinstance(context, dict) else None
    return found if isinstance(found, str) else None


def _validation_code(body: Any) -> Any:
    """`data.validationCode` of Event Grid's SubscriptionValidationEvent array, if there."""
    event = body[0] if isinstance(body, list) and body else None
    data = event.get("data") if isinstance(event, dict) else None
    return data.get("validationCode") if isinstance(data, dict) else None


def _handler(webhook: ScriptedWebhook) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, answer = webhook.answer(Received(self.path, dict(self.headers), body))
            data = json.dumps(answer).encode() if answer is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output quiet."""

    return Handler
