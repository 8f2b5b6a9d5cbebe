"""A sans-IO HTTP/1.1 server-side request parser and response writer (no sockets, no clock).

`RequestParser.receive_data(bytes)` returns the requests completed so far and keeps the rest;
`render_response(...)` returns the bytes of one response. The asyncio shell (`service_server`)
feeds it what it reads and writes what it renders; nothing else here touches I/O.

What it accepts (RFC 9112, strictly, as the service SDKs send it):
- request line `METHOD SP origin-form SP HTTP/1.1` (or HTTP/1.0), CRLF line endings;
- header fields `name: value` (token names; obsolete line folding refused); names are lower-cased
  and repeated fields joined with `, `;
- a body by `Content-Length` (digits only; repeated values must agree) or
  `Transfer-Encoding: chunked` (chunk extensions ignored, trailers dropped); both at once, or any
  other transfer coding, is refused;
- keep-alive by default for HTTP/1.1, unless `Connection: close`; HTTP/1.0 closes.

What it refuses, with `HttpParseError.status`: malformed syntax 400, header section larger than
`max_header_bytes` 431, body larger than `max_body_bytes` 413, other transfer codings 501.
After an error the parser is done: the connection cannot be resynchronised and must be closed once
the error response is written.

Errors:

    HttpParseError     the bytes are not an acceptable request; `status` and a message naming
                       the part that is wrong (never echoing header values, which may be secrets)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum, auto
from http import HTTPStatus

__all__ = ["HttpParseError", "Request", "RequestParser", "render_response"]

DEFAULT_MAX_HEADER_BYTES = 16 * 1024
DEFAULT_MAX_BODY_BYTES = 256 * 1024

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (/[^ \x00-\x1f\x7f]*) HTTP/1\.([01])")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,8})(?:;[^\r\n]*)?")
_FIELD_VALUE = re.compile(rb"[^\x00-\x08\x0a-\x1f\x7f]*")


class HttpParseError(Exception):
    """The request cannot be parsed or is too large; answer `status`, then close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, kw_only=True)
class Request:
    """One complete request."""

    method: str
    target: str
    headers: Mapping[str, str] = field(repr=False)  # lower-cased names; may hold credentials
    body: bytes = field(repr=False)
    keep_alive: bool


class _State(Enum):
    HEADERS = auto()
    BODY = auto()
    CHUNK_SIZE = auto()
    CHUNK_DATA = auto()
    TRAILERS = auto()
    FAILED = auto()


class RequestParser:
    """Bytes in, `Request` values out; one parser per connection."""

    def __init__(
        self,
        *,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self._max_header = max_header_bytes
        self._max_body = max_body_bytes
        self._buffer = bytearray()
        self._state = _State.HEADERS
        self._head: tuple[str, str, dict[str, str], bool] | None = None
        self._body = bytearray()
        self._remaining = 0
        self._progressed = False

    def receive_data(self, data: bytes) -> list[Request]:
        """Add bytes; return every request they complete. Raises HttpParseError."""
        if self._state is _State.FAILED:
            raise HttpParseError(400, "connection: a previous request was malformed")
        self._buffer += data
        requests: list[Request] = []
        try:
            while (request := self._step()) is not None or self._progressed:
                if request is not None:
                    requests.append(request)
        except HttpParseError:
            self._state = _State.FAILED
            raise
        return requests

    def _step(self) -> Request | None:
        """Advance one state; sets `_progressed` when more input may be consumable."""
        self._progressed = False
        if self._state is _State.HEADERS:
            return self._headers()
        if self._state is _State.BODY:
            if len(self._buffer) < self._remaining:
                return None
            self._body += self._buffer[: self._remaining]
            del self._buffer[: self._remaining]
            return self._finish()
        if self._state is _State.CHUNK_SIZE:
            return self._chunk_size()
        if self._state is _State.CHUNK_DATA:
            if len(self._buffer) < self._remaining + 2:
                return None
            if self._buffer[self._remaining : self._remaining + 2] != b"\r\n":
                raise HttpParseError(400, "body: expected CRLF after a chunk")
            self._body += self._buffer[: self._remaining]
            del self._buffer[: self._remaining + 2]
            self._state = _State.CHUNK_SIZE
            self._progressed = True
            return None
        if self._state is _State.TRAILERS:
            return self._trailers()
        return None

    def _line(self, limit: int, what: str) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > limit:
                raise HttpParseError(400, f"{what}: line too long")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def _headers(self) -> Request | None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > self._max_header:
                raise HttpParseError(431, f"headers: larger than {self._max_header} bytes")
            return None
        if end > self._max_header:
            raise HttpParseError(431, f"headers: larger than {self._max_header} bytes")
        head = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        lines = head.split(b"\r\n")
        match = _REQUEST_LINE.fullmatch(lines[0])
        if match is None:
            raise HttpParseError(400, "request line: expected METHOD /path HTTP/1.1")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):
                raise HttpParseError(400, "headers: expected 'name: value' lines")
            value = value.strip(b" \t")
            if not _FIELD_VALUE.fullmatch(value):
                raise HttpParseError(400, f"headers: {name.decode('ascii')} has control characters")
            key = name.decode("ascii").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        http10 = match.group(3) == b"0"
        connection = {token.strip().lower() for token in headers.get("connection", "").split(",")}
        keep_alive = "keep-alive" in connection if http10 else "close" not in connection
        self._head = (
            match.group(1).decode("ascii"),
            match.group(2).decode("latin-1"),
            headers,
            keep_alive,
        )
        self._body = bytearray()
        self._progressed = True
        transfer = headers.get("transfer-encoding")
        length = headers.get("content-length")
        if transfer is not None:
            if length is not None:
                raise HttpParseError(400, "headers: both Transfer-Encoding and Content-Length")
            if transfer.strip().lower() != "chunked":
                raise HttpParseError(501, "Transfer-Encoding: only chunked is supported")
            self._state = _State.CHUNK_SIZE
            return None
        self._remaining = self._content_length(length)
        self._state = _State.BODY
        return None

    def _content_length(self, value: str | None) -> int:
        if value is None:
            return 0
        values = {part.strip() for part in value.split(",")}
        if len(values) != 1 or not next(iter(values)).isdigit() or not value.isascii():
            raise HttpParseError(400, "Content-Length: expected one decimal number")
        length = int(values.pop())
        if length > self._max_body:
            raise HttpParseError(413, f"body: larger than {self._max_body} bytes")
        return length

    def _chunk_size(self) -> Request | None:
        line = self._line(64, "chunk size")
        if line is None:
            return None
        match = _CHUNK_SIZE.fullmatch(line)
        if match is None:
            raise HttpParseError(400, "body: expected a hexadecimal chunk size")
        size = int(match.group(1), 16)
        if len(self._body) + size > self._max_body:
            raise HttpParseError(413, f"body: larger than {self._max_body} bytes")
        self._remaining = size
        self._state = _State.TRAILERS if size == 0 else _State.CHUNK_DATA
        self._progressed = True
        return None

    def _trailers(self) -> Request | None:
        line = self._line(self._max_header, "trailer")
        if line is None:
            return None
        if line:
            self._progressed = True  # a trailer field: dropped
            return None
        return self._finish()

    def _finish(self) -> Request:
        assert self._head is not None  # noqa: S101 -- set by _headers before any body state
        method, target, headers, keep_alive = self._head
        self._head = None
        self._state = _State.HEADERS
        self._progressed = True
        return Request(
            method=method,
            target=target,
            headers=headers,
            body=bytes(self._body),
            keep_alive=keep_alive,
        )


def render_response(
    status: int,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    keep_alive: bool = True,
) -> bytes:
    """The bytes of one HTTP/1.1 response with `Content-Length` (and `Connection: close`)."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append(f"Content-Length: {len(body)}")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
