"""The asyncio shell of the service REST API: one TLS listener per hub, bytes <-> `ServiceApi`.

Each hub gets its own port on the bind address (`--service-port` for the first hub, then one more
per hub in configuration order); a request whose `Host` header names another configured hub goes
to that hub instead (`ServiceApi` decides). For each connection the shell feeds what it reads to an
`http1.RequestParser`, hands each request to `ServiceApi.handle`, and writes the rendered response;
a `MethodCall` is completed here by sending the method to the device and waiting for its answer
(or the request's timeout) without blocking other connections.

Per-connection rules (one bad client costs only its own connection; the server keeps serving):
- unparseable or oversized input -> the error response (400 / 413 / 431, semicolon body), close;
- idle longer than `idle_timeout` between requests -> closed;
- an unexpected exception while answering -> logged with its traceback, 500 ServerError, close.
It runs on the emulator's event loop, the same one as the MQTT server: the hubs are only ever
touched from that loop. Logs carry peer, method, path and status; never headers or bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from emulator.http1 import HttpParseError, Request, RequestParser, render_response
from emulator.hub.messages import MethodResponse
from emulator.service.api import MethodCall, ServiceApi, ServiceResponse

__all__ = ["DEFAULT_SERVICE_PORT", "ServiceEndpoint", "ServiceServer"]

log = logging.getLogger(__name__)

DEFAULT_SERVICE_PORT = 8443
_PARSE_CODES = {
    400: "ArgumentInvalid",
    413: "MessageTooLarge",
    431: "ArgumentInvalid",
    501: "ArgumentInvalid",
}


@dataclass(frozen=True)
class ServiceEndpoint:
    """Where one hub's service API listens."""

    hub: str
    port: int


class ServiceServer:
    """TLS listeners for the service API of every hub."""

    def __init__(
        self,
        api: ServiceApi,
        *,
        ssl_context: ssl.SSLContext | None,
        host: str,
        ports: Sequence[ServiceEndpoint],
        idle_timeout: float = 120.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api = api
        self._ssl = ssl_context
        self._host = host
        self._endpoints = tuple(ports)
        self._idle_timeout = idle_timeout
        self._clock = clock
        self._servers: list[asyncio.Server] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def endpoints(self) -> tuple[ServiceEndpoint, ...]:
        """Each hub and the port it actually listens on (port 0 resolved once started)."""
        if not self._servers:
            return self._endpoints
        return tuple(
            ServiceEndpoint(endpoint.hub, server.sockets[0].getsockname()[1])
            for endpoint, server in zip(self._endpoints, self._servers, strict=True)
        )

    async def start(self) -> None:
        """Bind every hub's port."""
        try:
            for endpoint in self._endpoints:
                server = await asyncio.start_server(
                    functools.partial(self._serve, hub=endpoint.hub),
                    self._host,
                    endpoint.port,
                    ssl=self._ssl,
                    ssl_handshake_timeout=10.0 if self._ssl else None,
                )
                self._servers.append(server)
        except OSError:
            await self.close()
            raise
        for endpoint in self.endpoints:
            log.info(
                "service api listening hub=%s host=%s port=%d",
                endpoint.hub,
                self._host,
                endpoint.port,
            )

    async def close(self) -> None:
        """Stop listening, close every connection, wait for the handlers."""
        for server in self._servers:
            server.close()
        # Idle keep-alive clients never answer a TLS close: abort their sockets and stop the
        # handlers, so that none outlives the server (and the loop it runs on).
        # An aborted socket ends its handler's read, so handlers finish on their own; cancelling
        # them instead makes Python 3.11's StreamReaderProtocol log an ERROR per connection.
        for writer in list(self._writers):
            writer.transport.abort()
        if self._handlers:
            _, stuck = await asyncio.wait(self._handlers, timeout=1)
            for task in stuck:
                task.cancel()
            if stuck:
                await asyncio.wait(stuck, timeout=5)
        for server in self._servers:
            await server.wait_closed()
        self._servers = []

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hub: str
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        self._writers.add(writer)
        peer = writer.get_extra_info("peername")
        try:
            await self._run(reader, writer, hub, peer)
        except (ConnectionError, ssl.SSLError, TimeoutError) as error:
            log.info("service connection ended peer=%s error=%s", peer, type(error).__name__)
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _run(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hub: str, peer: object
    ) -> None:
        parser = RequestParser()
        while True:
            try:
                async with asyncio.timeout(self._idle_timeout):
                    data = await reader.read(64 * 1024)
            except TimeoutError:
                return
            if not data:
                return
            try:
                requests = parser.receive_data(data)
            except HttpParseError as error:
                log.info(
                    "service bad request peer=%s status=%d reason=%s", peer, error.status, error
                )
                code = _PARSE_CODES.get(error.status, "ArgumentInvalid")
                reply = self._api.error(error.status, code, str(error), now=self._clock())
                writer.write(
                    render_response(reply.status, reply.headers, reply.body, keep_alive=False)
                )
                await writer.drain()
                return
            for request in requests:
                try:
                    reply = await self._answer(request, hub)
                except Exception:
                    log.exception("service api failed peer=%s method=%s", peer, request.method)
                    reply = self._api.error(500, "ServerError", "internal error", now=self._clock())
                    writer.write(
                        render_response(reply.status, reply.headers, reply.body, keep_alive=False)
                    )
                    await writer.drain()
                    return
                path = request.target.partition("?")[0]
                log.info("service %s %s -> %d hub=%s", request.method, path, reply.status, hub)
                writer.write(
                    render_response(
                        reply.status, reply.headers, reply.body, keep_alive=request.keep_alive
                    )
                )
                await writer.drain()
                if not request.keep_alive:
                    return

    async def _answer(self, request: Request, hub: str) -> ServiceResponse:
        result = self._api.handle(request, port_hub=hub, now=self._clock())
        if isinstance(result, ServiceResponse):
            return result
        return await self._method(result)

    async def _method(self, call: MethodCall) -> ServiceResponse:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[MethodResponse] = loop.create_future()

        def on_response(response: MethodResponse) -> None:
            if not answer.done():
                answer.set_result(response)

        sent = self._api.invoke(call, on_response, now=self._clock())
        if isinstance(sent, ServiceResponse):
            return sent
        try:
            async with asyncio.timeout(call.timeout):
                response = await answer
        except TimeoutError:
            return self._api.method_timeout(call, sent, now=self._clock())
        return self._api.method_result(response)
