"""Tests for emulator.dps.webhook: real HTTP POSTs and the function-backed fake."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from emulator.dps.webhook import (
    FunctionWebhook,
    HttpWebhook,
    WebhookResponse,
    WebhookUnavailable,
)
from tests.scripted_webhook import ScriptedWebhook

ANSWER = {"iotHubHostName": "h.azure-devices.net"}


@pytest.fixture
def server() -> Iterator[ScriptedWebhook]:
    """A real HTTP server on a free loopback port; `/slow` answers only when the test ends."""
    with ScriptedWebhook("127.0.0.1") as webhook:
        webhook.stalled.add("/slow")
        webhook.by_path["/slow"] = [(200, ANSWER)]
        yield webhook


def post_once(webhook: HttpWebhook, target: str, body: bytes) -> WebhookResponse:
    """One POST on a fresh event loop, the client closed afterwards."""

    async def run() -> WebhookResponse:
        try:
            return await webhook.post(target, body)
        finally:
            await webhook.aclose()

    return asyncio.run(run())


@pytest.mark.parametrize("status", [200, 400, 401, 429, 500])
def test_post_returns_status_and_body(server: ScriptedWebhook, status: int) -> None:
    """The client POSTs JSON with the query intact and returns the server's status and body."""
    server.by_path[f"/status/{status}"] = [(status, ANSWER)]
    body = json.dumps({"linkedHubs": ["h.azure-devices.net"]}).encode()
    response = post_once(HttpWebhook(timeout=5), server.url_for(f"/status/{status}?code=k1"), body)
    assert response.status == status
    assert json.loads(response.body) == {"iotHubHostName": "h.azure-devices.net"}
    (request,) = server.received
    assert request.path == f"/status/{status}?code=k1"
    assert request.body == body
    assert request.headers["Content-Type"].startswith("application/json")


def test_refused_connection_is_unavailable_and_masks_the_key() -> None:
    """A closed port raises WebhookUnavailable whose message hides the function key."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(WebhookUnavailable) as caught:
        post_once(HttpWebhook(timeout=5), f"http://127.0.0.1:{port}/api/a?code=k2", b"{}")
    assert "k2" not in str(caught.value)
    assert "?****" in str(caught.value)


def test_timeout_is_unavailable(server: ScriptedWebhook) -> None:
    """A server slower than the timeout raises WebhookUnavailable."""
    with pytest.raises(WebhookUnavailable, match=r"(?i)timeout"):
        post_once(HttpWebhook(timeout=0.2), server.url_for("/slow"), b"{}")


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
