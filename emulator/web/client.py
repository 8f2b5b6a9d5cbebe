"""The emulator's one outbound HTTP call: a blocking POST over ``http.client``.

DPS calling the allocation webhook (``webhook_client``) and hubs delivering lifecycle events
(``events``) both POST a JSON body and read a bounded answer. Callers run ``post`` in a worker
thread (``asyncio.to_thread``) so the event loop never blocks. Any failure to get an HTTP answer
is ``PostFailed``, whose message names the URL with its query masked (a function key travels in
``?code=``) and the kind of failure, never the server's words.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

from devtools.urls import mask_url as masked

__all__ = ["PostFailed", "masked", "post"]


class PostFailed(Exception):
    """No usable HTTP answer: unreachable, timed out, malformed, or larger than allowed."""


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    max_response_bytes: int,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[int, bytes]:
    """POST ``body`` to an http or https ``url``; return the status and the response body."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname or "",
            parts.port,
            timeout=timeout,
            context=ssl_context or ssl.create_default_context(),
        )
    elif parts.scheme == "http":
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    else:
        raise PostFailed(f"{masked(url)}: expected an http or https URL")
    try:
        connection.request("POST", target, body=body, headers=dict(headers))
        response = connection.getresponse()
        data = response.read(max_response_bytes + 1)
    except (OSError, http.client.HTTPException) as error:
        raise PostFailed(f"{masked(url)}: {type(error).__name__}") from None
    finally:
        connection.close()
    if len(data) > max_response_bytes:
        raise PostFailed(f"{masked(url)}: response larger than {max_response_bytes} bytes")
    return response.status, data
