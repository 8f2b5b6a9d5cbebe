"""The HTTPS listener devices reach on port 443: MQTT over WebSockets and the HTTPS device APIs.

One TLS port on the bind address (`--https-port`, default 443, the port the SDKs use for both)
serves DPS and every hub, as Azure's hosts each do on their own name. A request is told apart
(docs/protocol/transports.md §1):

1. a WebSocket upgrade -> MQTT (`mqtt.websocket`; path `/$iothub/websocket`, subprotocol `mqtt`);
   which of DPS or a hub it is for is the MQTT CONNECT's username, as on port 8883;
2. a `Host` header naming a hub -> that hub's HTTPS device API (`hub_api`);
3. a `Host` header naming DPS's host, or a path of DPS's shape (`/{idScope}/registrations/...`)
   -> DPS's HTTPS device API (`dps_api`);
4. a path under `/devices/` -> the hub the SAS token's `sr` names (a client sent to the emulator's
   address, as `gateway_hostname` does, puts that address in `Host`);
5. anything else: 404.

TLS certificates name the bind address, `localhost`, DPS's host and every hub, so SNI and `Host`
can be any of them. The ASGI app only translates: a request becomes a `service.api.Request`, the
answer a response. With the state journal, a response waits until the changes before it are on
disk, as the MQTT shell's acknowledgements do (503 if they cannot be). Limits and deadlines are
`web.server`'s; logs carry method, path and status, never headers, tokens or bodies.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from emulator.https.dps_api import DpsHttpApi, is_dps_path
from emulator.https.hub_api import HubHttpApi, hub_of_token
from emulator.mqtt.server import MqttServer
from emulator.mqtt.websocket import MqttWebSocket
from emulator.service.api import Request, ServiceResponse, error_response
from emulator.service.server import http_response, read_request
from emulator.web.server import HttpLimits, HttpServer, Limits, bind

__all__ = ["DEFAULT_HTTPS_PORT", "HttpsGateway"]

log = logging.getLogger(__name__)

DEFAULT_HTTPS_PORT = 443  # the SDKs' port for MQTT over WebSockets and HTTPS, not configurable


class HttpsGateway:
    """The device-facing HTTPS port: WebSockets to the MQTT shell, requests to DPS or a hub."""

    def __init__(
        self,
        *,
        dps: DpsHttpApi,
        hubs: HubHttpApi,
        hub_names: Sequence[str],
        dps_host: str,
        mqtt: MqttServer,
        ssl_context: ssl.SSLContext | None,
        host: str,
        port: int = DEFAULT_HTTPS_PORT,
        limits: HttpLimits | None = None,
        clock: Callable[[], float] = time.time,
        barrier: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._dps = dps
        self._hubs = hubs
        self._hub_names = {name.lower() for name in hub_names}
        self._dps_host = dps_host.lower()
        self._websocket = type("GatewayMqttWebSocket", (MqttWebSocket,), {"mqtt": mqtt})
        self._ssl = ssl_context
        self._host = host
        self._port = port
        self._limits = limits or HttpLimits()
        self._clock = clock
        self._barrier = barrier
        self._server: HttpServer | None = None
        self._tracking = 0

    @property
    def port(self) -> int:
        """The bound port (useful when constructed with port 0)."""
        return self._server.ports[0] if self._server is not None else self._port

    async def start(self) -> None:
        """Bind and serve (`OSError`, e.g. `PermissionError` for 443, names nothing: the caller
        says which option chooses the port)."""
        sock = bind(self._host, self._port)
        app = Limits(self._app, limits=self._limits, error=self._limit_error)
        self._server = HttpServer(
            app,
            sockets=[sock],
            ssl_context=self._ssl,
            limits=self._limits,
            name="https",
            websocket=self._websocket,
        )
        await self._server.start()
        log.info("https listening host=%s port=%d", self._host, self.port)

    async def close(self) -> None:
        """Stop listening and end every connection (WebSocket ones too)."""
        if self._server is not None:
            await self._server.close()
            self._server = None

    def _error(self, status: int, code: str, message: str) -> ServiceResponse:
        self._tracking += 1
        return error_response(
            status, code, message, now=self._clock(), tracking=f"{self._tracking:032x}"
        )

    def _limit_error(self, status: int, code: str, message: str) -> Response:
        return http_response(self._error(status, code, message))

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = await read_request(scope, receive)
        try:
            where, reply = self._answer(request)
        except Exception:
            log.exception("https request failed method=%s", request.method)
            where, reply = "-", self._error(500, "ServerError", "internal error")
        if self._barrier is not None:
            try:
                await self._barrier()
            except OSError:
                reply = self._error(503, "ServiceUnavailable", "the emulator cannot keep state")
        log.info("https %s %s -> %d to=%s", request.method, scope["path"], reply.status, where)
        await http_response(reply)(scope, receive, send)

    def _answer(self, request: Request) -> tuple[str, ServiceResponse]:
        now = self._clock()
        host = _host_name(request.headers.get("host", ""))
        path = request.target.partition("?")[0]
        if host in self._hub_names:
            return host, self._hubs.handle(request, host, now=now)
        if host == self._dps_host or is_dps_path(path):
            return "dps", self._dps.handle(request, now=now)
        if path.startswith("/devices/"):
            hub = hub_of_token(request.headers.get("authorization"))
            if hub is None:
                return "-", self._error(401, "IotHubUnauthorizedAccess", "Unauthorized")
            return hub, self._hubs.handle(request, hub, now=now)
        return "-", self._error(404, "ResourceNotFound", "nothing is served at this path")


def _host_name(header: str) -> str:
    """The host of a `Host` header, without its port, lower case (`[::1]:443` -> `::1`)."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value
