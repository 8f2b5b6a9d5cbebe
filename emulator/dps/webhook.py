"""The seam through which DPS calls a custom-allocation webhook, and its two implementations.

- `Webhook`: one async method, `post(url, body) -> WebhookResponse`; raises `WebhookUnavailable`
  when no HTTP answer came back (refused, reset, timed out, bad TLS).
- `HttpWebhook`: the real thing, through the emulator's one outbound client (`web.client`):
  `http://` and `https://` (system trust store, or the given SSL context), connections kept
  alive, at most `IN_FLIGHT` calls at once (more wait their turn within the timeout: with the
  hosted app in the emulator's process, 8 gave the most registrations per second in
  bench/dps_bench.py). No redirects are followed (undocumented for DPS; a redirect status is
  just a status, which maps to 400207).
- `FunctionWebhook`: an in-memory implementation backed by a plain function, for tests of code
  that calls webhooks. The same DPS tests run against `HttpWebhook` and a real HTTP server.

The webhook URL carries the function key (`?code=`): it is never logged or put in an error
message; logs show it masked as `?****`.

Errors:

    WebhookUnavailable   no HTTP response (DPS treats it like a 5xx: retried, then 400207)
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from devtools.urls import mask_url
from emulator.web.client import HttpClient, PostFailed

__all__ = [
    "FunctionWebhook",
    "HttpWebhook",
    "Webhook",
    "WebhookResponse",
    "WebhookUnavailable",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
MAX_RESPONSE_BYTES = 1024 * 1024
USER_AGENT = "iot-emulator-dps/1"
IN_FLIGHT = 8


class WebhookUnavailable(Exception):
    """The webhook gave no HTTP answer; the message names the masked URL and the cause kind."""


@dataclass(frozen=True)
class WebhookResponse:
    """One HTTP answer: status code and raw body."""

    status: int
    body: bytes = b""


class Webhook(Protocol):
    """Something that POSTs an AllocationRequest to a webhook URL."""

    async def post(self, url: str, body: bytes) -> WebhookResponse:
        """POST `body` (JSON) to `url`; raise WebhookUnavailable if no HTTP answer came."""
        ...

    async def aclose(self) -> None:
        """Release what the webhook client holds (connections)."""
        ...


class HttpWebhook:
    """POST over real HTTP (`web.client.HttpClient`, connections kept alive between calls)."""

    def __init__(
        self, *, timeout: float = DEFAULT_TIMEOUT, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._client = HttpClient(
            timeout=timeout,
            max_response_bytes=MAX_RESPONSE_BYTES,
            ssl_context=ssl_context,
            max_in_flight=IN_FLIGHT,
        )

    async def post(self, url: str, body: bytes) -> WebhookResponse:
        """POST `body` to `url` and return the status and body."""
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        try:
            status, data = await self._client.post(url, body, headers)
        except PostFailed as error:
            raise WebhookUnavailable(str(error)) from None
        log.debug("webhook %s answered %d", mask_url(url), status)
        return WebhookResponse(status, data)

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._client.aclose()


Handler = Callable[[str, Any], "WebhookResponse | Awaitable[WebhookResponse]"]


class FunctionWebhook:
    """A webhook backed by a function `(url, parsed JSON body) -> WebhookResponse`.

    The function may be async. It may raise WebhookUnavailable to simulate an unreachable host.
    Every call is recorded in `calls` as `(url, parsed body)`.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.calls: list[tuple[str, Any]] = []

    async def post(self, url: str, body: bytes) -> WebhookResponse:
        """Call the function with the parsed body and return its answer."""
        parsed = json.loads(body)
        self.calls.append((url, parsed))
        answer = self._handler(url, parsed)
        if isinstance(answer, WebhookResponse):
            return answer
        return await answer

    async def aclose(self) -> None:
        """Nothing to release."""

    @staticmethod
    def json(status: int, value: object) -> WebhookResponse:
        """A response with a JSON body."""
        return WebhookResponse(status, json.dumps(value).encode("utf-8"))
