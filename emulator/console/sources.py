"""Where the console reads and acts: the seams to the running emulator, each narrow.

- `Emulated` (a `Protocol`): what the console needs of the running emulator. It is the operator
  API's `Operations` plus the activity, each hub's service connection string, the CA, and where
  the hosted Functions app is; `app.Emulator` is one.
- `OperatorCalls`: the operator API (`operator.api.AdminApi`) served in-process: every read and
  every operator action (enable, disable, regenerate-key, send-c2d, fault-set, drop, ...) goes
  through the same handlers as `python -m emulator <command>`, so its effects are identical.
- `ServiceCalls`: the hubs' service REST API over HTTPS, signed with the hub's policy key as
  azure-iot-hub signs it: twin patches (etag-checked) and direct methods, as a back end would.
- `FunctionsCalls`: the hosted Functions app's admin routes (the registration log and inventory
  in Table storage), with the master key kept in the state directory.

Errors: `Unavailable` (a part that is not running: no hosted app, no such hub) with a message for
people; answers with an error status are returned as they are, never raised.
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from devtools.urls import mask_url
from emulator.activity import Activity
from emulator.operator.api import AdminApi, Operations
from emulator.web.client import HttpClient, PostFailed
from sas import generate_sas_token

__all__ = ["Emulated", "FunctionsCalls", "OperatorCalls", "ServiceCalls", "Unavailable"]

SERVICE_API_VERSION = "2021-04-12"
TOKEN_SECONDS = 3600
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class Emulated(Operations, Protocol):
    """What the console needs of the running emulator (`app.Emulator` is one)."""

    activity: Activity
    connection_strings: dict[str, str]
    functions: Any  # the hosted Functions host (`base_url`), or None

    @property
    def ca_path(self) -> Path: ...


class Unavailable(Exception):
    """The part of the local cloud asked for is not running here."""


Answer = tuple[int, Any]  # HTTP status and the decoded JSON answer (None when not JSON)


def _decoded(status: int, body: bytes) -> Answer:
    try:
        return status, json.loads(body) if body.strip() else None
    except ValueError:
        return status, None


class OperatorCalls:
    """The operator API, called in-process (no socket, no token leaves the process)."""

    def __init__(self, emulator: Operations) -> None:
        token = uuid.uuid4().hex
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=AdminApi(emulator, token=token).app),
            base_url="http://operator",
            headers={"Authorization": f"Bearer {token}"},
            timeout=40.0,
        )

    async def call(
        self, method: str, path: str, *, query: str = "", body: bytes | None = None
    ) -> Answer:
        """One operator API request (`path` under `/admin/`); its status and JSON answer."""
        url = f"/admin/{path.lstrip('/')}" + (f"?{query}" if query else "")
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if method in ("POST", "PUT", "PATCH") and body is None:
            body = b""
        answer = await self._client.request(method, url, content=body, headers=headers)
        return _decoded(answer.status_code, answer.content)

    async def aclose(self) -> None:
        """Release the client."""
        await self._client.aclose()


class ServiceCalls:
    """Each hub's service REST API, as a back end with the hub's connection string calls it."""

    def __init__(self, connection_strings: Mapping[str, str], ca_path: Path) -> None:
        self._hubs = {
            name.lower(): (name, _parse(text)) for name, text in connection_strings.items()
        }
        self._http = HttpClient(
            timeout=310.0,  # a direct method may take up to 300 s
            max_response_bytes=MAX_ANSWER_BYTES,
            ssl_context=ssl.create_default_context(cafile=str(ca_path)),
        )

    async def request(
        self,
        method: str,
        hub: str,
        path: str,
        body: object,
        *,
        if_match: str | None = None,
    ) -> Answer:
        """One service API request for `hub`; `path` with ids already escaped."""
        found = self._hubs.get(hub.lower())
        if found is None:
            raise Unavailable(f"hub {hub!r} is not configured")
        name, fields = found
        token = generate_sas_token(
            name,
            fields["SharedAccessKey"],
            int(time.time()) + TOKEN_SECONDS,
            fields["SharedAccessKeyName"],
        )
        headers = {"Authorization": token, "Content-Type": "application/json"}
        if if_match is not None:
            headers["If-Match"] = f'"{if_match}"'
        url = f"https://{fields['HostName']}{path}?api-version={SERVICE_API_VERSION}"
        try:
            status, data = await self._http.request(
                method, url, json.dumps(body).encode("utf-8"), headers
            )
        except PostFailed as error:
            raise Unavailable(f"the service API of {name} did not answer ({error})") from None
        return _decoded(status, data)

    async def patch_twin(
        self, hub: str, device_id: str, patch: Mapping[str, Any], etag: str | None
    ) -> Answer:
        """PATCH /twins/{id} with `If-Match` (`*` when no etag)."""
        return await self.request(
            "PATCH",
            hub,
            f"/twins/{quote(device_id, safe='')}",
            dict(patch),
            if_match=etag or "*",
        )

    async def invoke(
        self, hub: str, device_id: str, method_name: str, payload: object, timeout: int
    ) -> Answer:
        """POST /twins/{id}/methods: the device's answer, or the hub's error."""
        body = {
            "methodName": method_name,
            "payload": payload,
            "responseTimeoutInSeconds": timeout,
        }
        return await self.request("POST", hub, f"/twins/{quote(device_id, safe='')}/methods", body)

    async def aclose(self) -> None:
        """Close the kept-alive connections."""
        await self._http.aclose()


class FunctionsCalls:
    """The hosted Functions app's admin routes (auth level ADMIN: the master key)."""

    def __init__(self, base_url: str, master_key: str) -> None:
        self._base = base_url.rstrip("/")
        self._key = master_key
        self._http = HttpClient(timeout=15.0, max_response_bytes=MAX_ANSWER_BYTES)

    @property
    def where(self) -> str:
        """The app's address (no key)."""
        return mask_url(self._base)

    async def get(self, path: str) -> Answer:
        """GET `/api/<path>` with the master key."""
        try:
            status, data = await self._http.request(
                "GET", f"{self._base}/api/{path.lstrip('/')}", None, {"x-functions-key": self._key}
            )
        except PostFailed as error:
            raise Unavailable(f"the Functions app did not answer ({error})") from None
        return _decoded(status, data)

    async def aclose(self) -> None:
        """Close the kept-alive connections."""
        await self._http.aclose()


def _parse(connection_string: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in connection_string.split(";"):
        name, equals, value = part.partition("=")
        if equals:
            fields[name.strip()] = value.strip()
    return fields
