"""Tests for emulator.dps.webhook: real HTTP POSTs and the function-backed fake."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from emulator.dps.webhook import (
    FunctionWebhook,
    HttpWebhook,
    WebhookResponse,
    WebhookUnavailable,
)


class Recorder(BaseHTTPRequestHandler):
    """Answers POSTs with the status named by the path (`/status/404`), records each request."""

    requests: list[dict[str, Any]]

    def do_POST(self) -> None:
        """Record the request and answer with the path's status."""
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        self.server.requests.append(  # type: ignore[attr-defined]
            {"path": self.path, "headers": dict(self.headers), "body": body}
        )
        if self.path.startswith("/slow"):
            self.server.release.wait(5)  # type: ignore[attr-defined]
        status = int(self.path.split("/")[2].split("?")[0]) if "/status/" in self.path else 200
        answer = json.dumps({"iotHubHostName": "h.azure-devices.net"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    """A real HTTP server on a free loopback port."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    httpd.requests = []  # type: ignore[attr-defined]
    httpd.release = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield httpd
    httpd.release.set()  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def post_once(webhook: HttpWebhook, target: str, body: bytes) -> WebhookResponse:
    """One POST on a fresh event loop, the client closed afterwards."""

    async def run() -> WebhookResponse:
        try:
            return await webhook.post(target, body)
        finally:
            await webhook.aclose()

    return asyncio.run(run())


def url(server: ThreadingHTTPServer, path: str) -> str:
    """The URL of a path on the test server."""
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}{path}"


@pytest.mark.parametrize("status", [200, 400, 401, 429, 500])
def test_post_returns_status_and_body(server: ThreadingHTTPServer, status: int) -> None:
    """The client POSTs JSON with the query intact and returns the server's status and body."""
    body = json.dumps({"linkedHubs": ["h.azure-devices.net"]}).encode()
    response = post_once(HttpWebhook(timeout=5), url(server, f"/status/{status}?code=k1"), body)
    assert response.status == status
    assert json.loads(response.body) == {"iotHubHostName": "h.azure-devices.net"}
    (request,) = server.requests  # type: ignore[attr-defined]
    assert request["path"] == f"/status/{status}?code=k1"
    assert request["body"] == body
    assert request["headers"]["Content-Type"].startswith("application/json")


def test_refused_connection_is_unavailable_and_masks_the_key() -> None:
    """A closed port raises WebhookUnavailable whose message hides the function key."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(WebhookUnavailable) as caught:
        post_once(HttpWebhook(timeout=5), f"http://127.0.0.1:{port}/api/a?code=k2", b"{}")
    assert "k2" not in str(caught.value)
    assert "?****" in str(caught.value)


def test_timeout_is_unavailable(server: ThreadingHTTPServer) -> None:
    """A server slower than the timeout raises WebhookUnavailable."""
    with pytest.raises(WebhookUnavailable, match=r"(?i)timeout"):
        post_once(HttpWebhook(timeout=0.2), url(server, "/slow"), b"{}")


def test_function_webhook_records_calls_and_awaits_async_handlers() -> None:
    """The fake passes the parsed body to sync and async functions and records each call."""

    async def handler(target: str, body: Any) -> WebhookResponse:
        return FunctionWebhook.json(200, {"seen": body["n"], "url": target})

    fake = FunctionWebhook(handler)
    response = asyncio.run(fake.post("http://x/api", b'{"n": 3}'))
    assert json.loads(response.body) == {"seen": 3, "url": "http://x/api"}
    assert fake.calls == [("http://x/api", {"n": 3})]
    sync = FunctionWebhook(lambda target, body: WebhookResponse(401))
    assert asyncio.run(sync.post("http://x", b"{}")).status == 401
