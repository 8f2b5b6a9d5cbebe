"""The service REST API's listeners: one TLS port per hub, requests to `ServiceApi`, on `web.server`.

Each hub gets its own port on the bind address (`--service-port` for the first hub, then one more
per hub in configuration order); a request whose `Host` header names another configured hub goes
to that hub instead (`ServiceApi` decides). The ASGI app here only translates: the request becomes
a `service.api.Request`, the answer a response; a `MethodCall` is completed here by waiting for
the device to come online (up to its connect timeout), sending the method to the device and
waiting for its answer (or the request's timeout), without blocking other connections. It runs
on the emulator's event loop, where the hubs live.

Limits and deadlines are `web.server`'s; what their refusals say is IoT Hub's error body
(`ServiceApi.error`). An unexpected exception while answering is logged with its traceback and
answered 500 ServerError. Logs carry method, path and status; never headers or bodies.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from emulator.hub.messages import MethodResponse
from emulator.service.api import MethodCall, Request, ServiceApi, ServiceResponse
from emulator.web.server import HttpLimits, HttpServer, Limits, bind

__all__ = [
    "DEFAULT_SERVICE_PORT",
    "ServiceEndpoint",
    "ServiceServer",
    "http_response",
    "read_request",
]

log = logging.getLogger(__name__)

DEFAULT_SERVICE_PORT = 8443


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
        limits: HttpLimits | None = None,
        clock: Callable[[], float] = time.time,
        barrier: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._barrier = barrier  # the state journal: a response waits until its change is on disk
        self._api = api
        self._ssl = ssl_context
        self._host = host
        self._endpoints = tuple(ports)
        self._limits = limits or HttpLimits()
        self._clock = clock
        self._hub_by_port: dict[int, str] = {}
        self._server: HttpServer | None = None

    @property
    def endpoints(self) -> tuple[ServiceEndpoint, ...]:
        """Each hub and the port it actually listens on (port 0 resolved once started)."""
        if self._server is None:
            return self._endpoints
        return tuple(
            ServiceEndpoint(endpoint.hub, port)
            for endpoint, port in zip(self._endpoints, self._server.ports, strict=True)
        )

    async def start(self) -> None:
        """Bind every hub's port (`OSError` names nothing: the caller says which option)."""
        sockets: list[socket.socket] = []
        try:
            for endpoint in self._endpoints:
                sockets.append(bind(self._host, endpoint.port))
        except OSError:
            for sock in sockets:
                sock.close()
            raise
        app = Limits(self._app, limits=self._limits, error=self._error)
        self._server = HttpServer(
            app, sockets=sockets, ssl_context=self._ssl, limits=self._limits, name="service"
        )
        await self._server.start()
        self._hub_by_port = {endpoint.port: endpoint.hub for endpoint in self.endpoints}
        for endpoint in self.endpoints:
            log.info(
                "service api listening hub=%s host=%s port=%d",
                endpoint.hub,
                self._host,
                endpoint.port,
            )

    async def close(self) -> None:
        """Stop listening and end every connection."""
        if self._server is not None:
            await self._server.close()
            self._server = None

    def _error(self, status: int, code: str, message: str) -> Response:
        return http_response(self._api.error(status, code, message, now=self._clock()))

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        port = scope["server"][1] if scope.get("server") else 0
        hub = self._hub_by_port.get(port, self._endpoints[0].hub if self._endpoints else "")
        request = await read_request(scope, receive)
        try:
            reply = await self._answer(request, hub)
        except Exception:
            log.exception("service api failed method=%s", request.method)
            reply = self._api.error(500, "ServerError", "internal error", now=self._clock())
        if self._barrier is not None:
            try:
                await self._barrier()
            except OSError:
                reply = self._api.error(
                    503, "ServiceUnavailable", "the emulator cannot keep state", now=self._clock()
                )
        log.info("service %s %s -> %d hub=%s", request.method, scope["path"], reply.status, hub)
        await http_response(reply)(scope, receive, send)

    async def _answer(self, request: Request, hub: str) -> ServiceResponse:
        result = self._api.handle(request, port_hub=hub, now=self._clock())
        if isinstance(result, ServiceResponse):
            return result
        return await self._method(result)

    async def _method(self, call: MethodCall) -> ServiceResponse:
        hub, device_id = call.hub, call.device_id
        if (
            call.connect_timeout > 0
            and hub.device(device_id) is not None
            and not hub.methods_ready(device_id)
        ):
            await _wait_for_methods(call)
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


async def _wait_for_methods(call: MethodCall) -> None:
    """Wait up to the call's `connectTimeoutInSeconds` for the device to connect and subscribe
    to methods; the call then goes ahead either way (and fails 404103 if it still cannot)."""
    ready = asyncio.Event()
    cancel = call.hub.when_methods_ready(call.device_id, ready.set)
    try:
        async with asyncio.timeout(call.connect_timeout):
            await ready.wait()
    except TimeoutError:
        pass
    finally:
        cancel()


async def read_request(scope: Scope, receive: Receive) -> Request:
    """An HTTP request as a core's `Request` (the HTTPS gateway's too): raw path and query, header
    names lower-cased, the whole body (bounded by `web.server.Limits`)."""
    incoming = HttpRequest(scope, receive)
    target = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    return Request(
        method=scope["method"],
        target=target,
        headers={name.lower(): value for name, value in incoming.headers.items()},
        body=await incoming.body(),
    )


def http_response(reply: ServiceResponse) -> Response:
    """A core's `ServiceResponse` as a Starlette response (the HTTPS gateway's too)."""
    response = Response(content=reply.body, status_code=reply.status)
    for name, value in reply.headers:
        if name.lower() == "content-type":
            response.headers["content-type"] = value
        else:
            response.headers.append(name, value)
    return response
