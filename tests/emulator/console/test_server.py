"""The console's gate: the login token (URL, cookie or bearer), the Host header and the origin."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from emulator.console.server import PORT_FILE, ConsoleServer, TokenGate

TOKEN = "s3cret-token"
HOST = "testserver"


async def inside(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"inside {request.method} {request.url.path}")


class Web:
    """Requests to the gate around a small app, in-process (no socket)."""

    def __init__(self) -> None:
        app = Starlette(routes=[Route("/{path:path}", inside, methods=["GET", "POST"])])
        self.app = TokenGate(app, token=TOKEN, cookie="console-1", hosts=frozenset({HOST}))
        self.cookies: dict[str, str] = {}

    def request(self, method: str, target: str, **options: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=self.app),
                base_url=f"http://{HOST}",
                cookies=self.cookies,
            ) as web:
                return await web.request(method, target, **options)

        return asyncio.run(call())

    def get(self, target: str, **options: Any) -> httpx.Response:
        return self.request("GET", target, **options)

    def post(self, target: str, **options: Any) -> httpx.Response:
        return self.request("POST", target, **options)

    def __enter__(self) -> Web:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def client() -> Web:
    return Web()


def test_without_the_token_pages_and_api_answer_401() -> None:
    """No token, a wrong one, an empty one: 401, an HTML page for pages, JSON for the API."""
    with client() as web:
        for target in ("/", "/static/console.js", "/?token=wrong", "/?token="):
            answer = web.get(target)
            assert answer.status_code == 401, target
            assert "login token" in answer.text
        api = web.get("/api/admin/status")
        assert api.status_code == 401
        assert api.json()["error"]["code"] == "Unauthorized"
        assert TOKEN not in api.text
        assert web.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_the_url_token_becomes_a_cookie_and_leaves_the_address_bar() -> None:
    """Opening `/?token=...` redirects to `/` with an HttpOnly SameSite=Strict cookie that then
    lets every request through."""
    with client() as web:
        answer = web.get(f"/?token={TOKEN}&view=1")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/?view=1"
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
        web.cookies["console-1"] = TOKEN
        assert web.get("/api/admin/status").text == "inside GET /api/admin/status"


def test_bearer_and_api_query_tokens_pass() -> None:
    """Scripts may send the token as a bearer token, or in the query of an API call."""
    with client() as web:
        assert web.get("/api/x", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert web.get(f"/api/x?token={TOKEN}").status_code == 200


def test_another_host_name_is_refused_even_with_the_token() -> None:
    """A page of another site whose name resolves to loopback (DNS rebinding) gets 403."""
    with client() as web:
        answer = web.get(f"/api/x?token={TOKEN}", headers={"Host": "evil.example:80"})
        assert answer.status_code == 403
        assert answer.json()["error"]["code"] == "ForbiddenHost"


def test_changes_from_another_origin_are_refused() -> None:
    """A POST whose Origin is another site is refused; the page's own origin passes."""
    with client() as web:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        foreign = web.post("/api/x", headers={**headers, "Origin": "http://evil.example"})
        assert foreign.status_code == 403
        own = web.post("/api/x", headers={**headers, "Origin": f"http://{HOST}"})
        assert own.status_code == 200


def test_a_malformed_cookie_header_is_no_cookie() -> None:
    """A Cookie header that does not parse is ignored: 401, not an error."""
    with client() as web:
        answer = web.get("/api/x", headers={"Cookie": 'console-1="unterminated; ;;=='})
        assert answer.status_code == 401


def test_the_console_asks_again_for_the_port_it_had(tmp_path: Path) -> None:
    """With --console-port 0 the console gets any port and keeps it in the state directory; the
    next start asks for it again, so a bookmarked URL still works; if another program holds it,
    the console takes another and remembers that one. A file that holds no port is ignored."""
    bind = "127.54.9.1"

    def start() -> Any:
        return ConsoleServer(cast(Any, None), state_dir=tmp_path, host=bind)._bind()

    first = start()
    port = first.getsockname()[1]
    first.close()
    assert (tmp_path / PORT_FILE).read_text().strip() == str(port)
    again = start()
    assert again.getsockname()[1] == port
    other = start()  # `again` still holds the port
    assert other.getsockname()[1] != port
    assert (tmp_path / PORT_FILE).read_text().strip() == str(other.getsockname()[1])
    again.close()
    other.close()
    (tmp_path / PORT_FILE).write_text("not a port\n")
    fresh = start()
    assert fresh.getsockname()[1] > 0
    fresh.close()
