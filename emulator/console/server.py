"""The console's listener: loopback only, a login token in its URL, on `web.server`.

`ConsoleServer` serves `api.ConsoleApi` on a loopback address (the emulator's `--bind` when it is
one, else 127.0.0.1) and `--console-port` (0: any free port). Its URL carries a token, as
Jupyter's does: `http://127.0.0.1:<port>/?token=<token>`. The token is kept in
`<state-dir>/console-token` (0600), and with `--console-port 0` the port it got is kept in
`<state-dir>/console-port` and asked for again at the next start (any free port if it is taken),
so a bookmarked URL works after a restart; the URL is printed at start and written to
`admin.json` as `console_url` (that file is 0600 too).

Access (`TokenGate`, around every route, the page and its assets included):

- a request whose `?token=` is right, a cookie set by such a request, or `Authorization: Bearer`
  with the token passes; anything else is 401 (an HTML page for a browser, JSON for `/api/`);
- opening a page with `?token=` sets the cookie (HttpOnly, SameSite=Strict) and redirects to the
  same page without the token, so it stays out of the address bar and the history;
- the `Host` header must name this listener (a page of another site that resolves a name of its
  own to 127.0.0.1 gets 403), and a request that changes something must come from this origin.

Must not: listen on anything but loopback, log the token, or let a browser slow a device down
(`feed`).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import socket
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from devtools.checkout import CHECKOUT
from emulator.console.api import ConsoleApi, PolicyView, error_json
from emulator.console.feed import Feed
from emulator.console.sources import Emulated, FunctionsCalls, OperatorCalls, ServiceCalls
from emulator.functions.host import state_key
from emulator.web.server import HttpLimits, HttpServer, Limits, bind

__all__ = ["TOKEN_FILE", "ConsoleServer", "TokenGate"]

log = logging.getLogger(__name__)

TOKEN_FILE = "console-token"  # noqa: S105 -- a file name, not a secret
PORT_FILE = "console-port"
LIMITS = HttpLimits(max_body_bytes=64 * 1024, body_timeout=10.0, idle_timeout=60.0)
_CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_UNAUTHORIZED_PAGE = b"""<!doctype html><meta charset="utf-8"><title>401 - local cloud console</title>
<body style="font:16px system-ui,sans-serif;margin:3em;color:#223">
<h1>401: this console needs its login token</h1>
<p>Open the URL the local cloud printed when it started, or ask for it again, in the checkout:</p>
<pre>.venv/bin/python -m emulator console --open</pre></body>
"""


class TokenGate:
    """ASGI middleware: the token (query, cookie or bearer), the Host header, the origin."""

    def __init__(self, app: ASGIApp, *, token: str, cookie: str, hosts: frozenset[str]) -> None:
        self._app = app
        self._token = token.encode()
        self._cookie = cookie
        self._hosts = hosts

    def _valid(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest((presented or "").encode(), self._token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self._app(scope, receive, send)
            return
        if isinstance(refusal, tuple):
            status, code, message = refusal
            response: Response = error_json(status, code, message)
            if status == 401 and not scope["path"].startswith("/api/"):
                response = Response(
                    _UNAUTHORIZED_PAGE, status_code=401, media_type="text/html; charset=utf-8"
                )
        else:
            response = refusal
        await response(scope, receive, send)

    def _refusal(self, scope: Scope) -> tuple[int, str, str] | Response | None:
        """None to go on; else an error (status, code, message) or the login redirect."""
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        path: str = scope["path"]
        host = headers.get("host", "").lower()
        if host not in self._hosts:
            return 403, "ForbiddenHost", "Host: expected this console's own address"
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        from_query = next((value for name, value in query if name == "token"), None)
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except CookieError:  # a malformed Cookie header is just no cookie
            cookies = SimpleCookie()
        from_cookie = cookies[self._cookie].value if self._cookie in cookies else None
        bearer = headers.get("authorization", "")
        from_header = bearer[7:] if bearer.lower().startswith("bearer ") else None
        if self._valid(from_query) and scope["method"] == "GET" and not path.startswith("/api/"):
            rest = [(name, value) for name, value in query if name != "token"]
            response = RedirectResponse(path + (f"?{urlencode(rest)}" if rest else ""), 303)
            response.set_cookie(
                self._cookie, from_query or "", httponly=True, samesite="strict", path="/"
            )
            response.headers["Referrer-Policy"] = "no-referrer"
            return response
        if not any(self._valid(value) for value in (from_query, from_cookie, from_header)):
            return (
                401,
                "Unauthorized",
                "expected the console's login token (the URL printed at start; "
                "python -m emulator console prints it again)",
            )
        origin = headers.get("origin")
        if scope["method"] in _CHANGES and origin not in (None, f"http://{host}"):
            return 403, "ForbiddenOrigin", "Origin: expected this console's own page"
        return None


class ConsoleServer:
    """The web console of one running emulator."""

    def __init__(
        self, emulator: Emulated, *, state_dir: Path, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._emulator = emulator
        self._state_dir = state_dir
        self._host = host
        self._port = port
        self._token = ""
        self._server: HttpServer | None = None
        self._feed: Feed | None = None
        self._closers: list[Any] = []

    @property
    def port(self) -> int:
        """The bound port once started."""
        return self._server.ports[0] if self._server is not None else self._port

    @property
    def url(self) -> str:
        """The console's address with its login token (a secret: 0600 files and the terminal)."""
        return f"http://{self._host}:{self.port}/?token={self._token}"

    async def start(self) -> None:
        """Bind, then serve (the caller names the option when the port cannot be had)."""
        sock = self._bind()
        self._token, _ = state_key(self._state_dir, TOKEN_FILE)
        emulator = self._emulator
        feed = Feed(emulator.activity)
        operator = OperatorCalls(emulator)
        service = (
            ServiceCalls(emulator.connection_strings, emulator.ca_path)
            if emulator.connection_strings
            else None
        )
        functions = None
        policy = None
        if emulator.functions is not None:
            master, _ = state_key(self._state_dir, "master-key")
            functions = FunctionsCalls(emulator.functions.base_url, master)
            policy = _policy_view(emulator.options.app_settings)
        self._feed = feed
        self._closers = [c for c in (operator, service, functions) if c is not None]
        api = ConsoleApi(
            feed=feed,
            operator=operator,
            service=service,
            functions=functions,
            policy=policy,
            info={
                "hubs": [hub.name for hub in emulator.hubs] if emulator.hubs is not None else [],
                "state_dir": str(self._state_dir),
                "functions_url": functions.where if functions is not None else None,
            },
        )
        port = int(sock.getsockname()[1])
        hosts = frozenset({f"{self._host}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"})
        app = Limits(
            TokenGate(api.app, token=self._token, cookie=f"console-{port}", hosts=hosts),
            limits=LIMITS,
            error=error_json,
        )
        self._server = HttpServer(app, sockets=[sock], limits=LIMITS, name="console")
        await self._server.start()
        log.info("console listening on http://%s:%d/", self._host, port)

    def _bind(self) -> socket.socket:
        """The port asked for; with 0, the one the last start got if it is free, else any, and
        that one is remembered for the next start."""
        if self._port != 0:
            return bind(self._host, self._port)
        remembered = self._state_dir / PORT_FILE
        sock = None
        with contextlib.suppress(OSError, ValueError):
            port = int(remembered.read_text(encoding="ascii").strip())
            if 1024 <= port <= 65535:
                sock = bind(self._host, port)
        if sock is None:
            sock = bind(self._host, 0)
        with contextlib.suppress(OSError):
            remembered.write_text(f"{sock.getsockname()[1]}\n", encoding="ascii")
        return sock

    async def close(self) -> None:
        """Stop listening, end the streams, release the clients."""
        if self._server is not None:
            await self._server.close()
            self._server = None
        if self._feed is not None:
            self._feed.close()
            self._feed = None
        for closer in self._closers:
            await closer.aclose()
        self._closers = []


def _policy_view(settings: Mapping[str, str] | None) -> PolicyView:
    from webhook.policy_source import SETTING, PolicySource  # noqa: PLC0415 -- only with an app

    values = settings if settings is not None else os.environ
    source = PolicySource(values, root=CHECKOUT)
    return PolicyView(load=source.get, file=values.get(SETTING, "").strip() or "(default: hash)")
