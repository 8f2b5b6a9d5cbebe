"""The emulator's one outbound HTTP client: httpx, async, on the emulator's event loop.

DPS calling a custom-allocation webhook (`dps.webhook`) and hubs delivering lifecycle events
(`events.delivery`) both POST a JSON body and read a bounded answer through `HttpClient.post`; the
console (`console`) also reads and patches through `HttpClient.request`.
Connections are kept alive and reused between calls (DPS calls the same webhook for every
device). At most `max_in_flight` requests (16 by default) are in flight at once; more wait their
turn here, within the same timeout, and the pool holds at most that many connections. Unbounded,
every request made httpcore's pool walk all its connections, each asked whether it had expired:
at 50 registrations in flight that walk was a third of the emulator's loop. Any failure to get an
HTTP answer is `PostFailed` (`PoolTimeout` when no turn came within the timeout), whose message
names the URL with its query masked (a function key travels in `?code=`) and the kind of failure,
never the server's words. No redirect is followed: a redirect status is just a status.

TLS: the system's trust store with certifi (httpx's default), or the `ssl.SSLContext` given.

httpx logs every request's URL at INFO, query and all: a filter on its logger masks every URL in
its records (`devtools.urls.mask_url`), so a function key never reaches a log, whoever configures
logging.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping

import httpx

from devtools.urls import mask_url

__all__ = ["HttpClient", "PostFailed"]

MAX_IN_FLIGHT = 16


class _MaskUrls(logging.Filter):
    """Replace every URL argument of a log record with its masked form."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                mask_url(str(arg)) if isinstance(arg, httpx.URL) else arg for arg in record.args
            )
        return True


for _name in ("httpx", "httpcore"):
    if not any(isinstance(f, _MaskUrls) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_MaskUrls())


class PostFailed(Exception):
    """No usable HTTP answer: unreachable, timed out, malformed, or larger than allowed."""


class HttpClient:
    """Requests with a timeout and a bound on the answer's size; close with `aclose`."""

    def __init__(
        self,
        *,
        timeout: float,
        max_response_bytes: int,
        ssl_context: ssl.SSLContext | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._max = max_response_bytes
        self._timeout = timeout
        self._turns = asyncio.Semaphore(max_in_flight)
        self._client = httpx.AsyncClient(
            timeout=timeout,
            verify=ssl_context if ssl_context is not None else True,
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(
                max_connections=max_in_flight, max_keepalive_connections=max_in_flight
            ),
        )

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """POST `body` to an http or https `url`; the status and the answer's body."""
        return await self.request("POST", url, body, headers)

    async def request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        """Any method (the console reads and patches too); the status and the answer's body."""
        if not url.lower().startswith(("http://", "https://")):
            raise PostFailed(f"{mask_url(url)}: expected an http or https URL")
        try:
            async with asyncio.timeout(self._timeout):
                await self._turns.acquire()
        except TimeoutError:
            raise PostFailed(f"{mask_url(url)}: PoolTimeout") from None
        try:
            return await self._send(method, url, body, headers)
        finally:
            self._turns.release()

    async def _send(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        try:
            async with self._client.stream(
                method, url, content=body, headers=dict(headers)
            ) as answer:
                data = bytearray()
                async for chunk in answer.aiter_raw():
                    data += chunk
                    if len(data) > self._max:
                        raise PostFailed(f"{mask_url(url)}: response larger than {self._max} bytes")
                return answer.status_code, bytes(data)
        except httpx.HTTPError as error:
            raise PostFailed(f"{mask_url(url)}: {type(error).__name__}") from None
        except ValueError as error:  # an URL httpx cannot use
            raise PostFailed(f"{mask_url(url)}: {type(error).__name__}") from None

    async def aclose(self) -> None:
        """Close the kept-alive connections."""
        await self._client.aclose()
