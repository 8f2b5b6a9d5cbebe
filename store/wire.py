"""`Wire`: keep-alive HTTP/1.1 connections to one host, for the webhook's two Table requests.

`store.rest` sends a point read and an entity-group transaction (or an upsert) per webhook call,
and nothing else, to one host: the Table endpoint. This is the client it sends them with, in the
place of urllib3 and http.client, because of what a request costs the function app's CPU.
Measured against Azurite on loopback, CPU of the calling process per point read (about 0.2 KB up,
0.4 KB down): urllib3 0.22-0.29 ms, http.client alone 0.12-0.15 ms, h11 (the sans-I/O HTTP/1.1
library) over a plain socket 0.16 ms, a bare socket with a minimal parser 0.04 ms, and
this module, with `store.rest`'s signing and parsing, 0.08 ms. urllib3 and http.client build header
dictionaries and response objects per request and parse every answer's head with the email
package, which for a transaction's `multipart/mixed` answer also compiles a regular expression for
its boundary (new every time, so never cached): about 0.11 ms per transaction. At two requests per
webhook call that difference is the whole of what separated the store from its goal (at most 3x
the in-memory store's CPU per call).

What it does, and no more (RFC 9112, "HTTP/1.1"; the sections named below are that document's):

- Requests: one ``sendall`` of the request line, the caller's headers, ``Host`` and
  ``Content-Length`` (for a body), and the body. No ``Expect``, no compression, no redirects, no
  proxies (the store keeps the Tables SDK when the environment names a proxy), no retries but one:
  a reused connection that the server closed while idle, found when the request's answer never
  started, is replaced by a new connection once for a GET or a PUT (§9.3.1; idempotent methods,
  RFC 9110 §9.2.2); a POST (the transaction) is never sent twice.
- Answers (§4-§7): a status line ``HTTP/1.x NNN reason`` (100-599); header lines ``name:
  value`` (a line folded onto the next, anything without a colon, a name with white space, a
  bare CR or LF or a NUL anywhere in the head is a malformed answer); 1xx interim answers
  skipped; no body for 204 and 304; otherwise the body by ``Transfer-Encoding: chunked`` (chunk
  extensions read and dropped, trailer fields too, bounded like a head), else by one
  ``Content-Length`` (repeated values must agree), else up to the connection's close. With both
  chunked and a length, the chunks win and the connection is not reused (§6.3). The head is
  bounded by `MAX_HEAD_BYTES`, the body by the caller's limit, both checked before reading on.
- Connections: idle ones are kept (at most `max_idle`) and reused, last used first, when the
  answer said nothing of closing (``Connection: close``), was HTTP/1.1 and was read to its end by
  its length or its chunks; any error closes the connection it happened on. An idle connection
  is kept at most `MAX_IDLE_SECONDS`, or a second less than the server's ``Keep-Alive: timeout``
  (Azurite says 5 s), so that a request rarely meets a connection the server, a NAT or a load
  balancer is closing. Before reuse, a connection that is readable (the server closed it, or sent
  bytes nobody asked for) is closed instead (the check urllib3 makes, with its `wait_for_read`).
  ``TCP_NODELAY`` is set: each request is one write, and waiting for an acknowledgement before
  sending it would only add latency.
- TLS for ``https``: the platform's default context (certificates verified against the system's
  trust store, host name checked, SNI sent), as urllib3 does; a caller may pass its own. A TCP
  close without TLS's close_notify in the middle of an answer is an answer cut off (§9.8).
- Time: every request has an end, the caller's; each address's connect, the TLS handshake and
  each wait for bytes take at most their own timeouts and never past that end. A peer that
  answers a byte at a time cannot stretch a request past it. Name resolution is the system
  resolver's, bounded by its own timeouts (as with urllib3).

Errors: `Unanswered` (no complete HTTP answer: refused, reset, malformed, too large, too late;
``timed_out`` for the last). Its reason names what went wrong, never the host, a header or a byte
of the answer.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from urllib3.util import wait_for_read

MAX_HEAD_BYTES = 64 * 1024
MAX_INTERIM_ANSWERS = 8
MAX_IDLE_SECONDS = 30.0
_KEEP_ALIVE_MARGIN = 1.0
_RECV_BYTES = 64 * 1024
_MAX_CHUNK_LINE = 4096
_IDEMPOTENT = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}
_NO_BODY_STATUS = {204, 304}
_KEEP_ALIVE_TIMEOUT = re.compile(r"(?:^|[,;\s])timeout\s*=\s*(\d{1,6})(?:$|[,;\s])", re.IGNORECASE)


class Unanswered(Exception):
    """No complete HTTP answer; `timed_out` when it was a time bound that ran out."""

    def __init__(self, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out


@dataclass(frozen=True)
class Answer:
    """A whole HTTP answer: its status, its header fields (names in lower case; a repeated field's
    values joined with ``", "``) and its body."""

    status: int
    headers: dict[str, str]
    body: bytes


class Wire:
    """Keep-alive HTTP/1.1 connections to ``scheme://host:port``; safe to share between threads."""

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        *,
        max_idle: int = 16,
        tls: ssl.SSLContext | None = None,
        on_send: Callable[[str], None] | None = None,
    ) -> None:
        if scheme not in ("http", "https"):
            raise ValueError("scheme: expected http or https")
        self._host_name = host
        self._port = port
        authority = f"[{host}]" if ":" in host else host
        default_port = 443 if scheme == "https" else 80
        self._host = authority if port == default_port else f"{authority}:{port}"
        self._tls = (tls or ssl.create_default_context()) if scheme == "https" else None
        self._max_idle = max_idle
        # Idle connections, each with the time.monotonic() after which it is not reused.
        self._idle: list[tuple[socket.socket, float]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._on_send = on_send
        self.opened = 0
        """Connections made so far (a new one per request means keep-alive is not working)."""
        # A Wire dropped without `close` still closes its idle connections (as urllib3's pools do).
        weakref.finalize(self, _close_all, self._idle)

    def close(self) -> None:
        """Close the idle connections; one in use is closed when its request ends."""
        with self._lock:
            self._closed = True
            idle = self._idle.copy()
            self._idle.clear()
        _close_all(idle)

    def request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: bytes | None,
        *,
        connect_timeout: float,
        read_timeout: float,
        end: float,
        max_body: int,
    ) -> Answer:
        """Send one request and read its whole answer by `end` (a `time.monotonic` time).
        `ValueError` when the request line or a header holds a line break or is not Latin-1."""
        message = self._message(method, target, headers, body)
        sock = self._take_idle()
        if sock is not None:
            try:
                return self._exchange(
                    sock, method, message, read_timeout=read_timeout, end=end, max_body=max_body
                )
            except _Stale:
                sock.close()
                if method not in _IDEMPOTENT:
                    raise Unanswered("the connection closed before an answer") from None
        sock = self._connect(connect_timeout, end)
        try:
            return self._exchange(
                sock, method, message, read_timeout=read_timeout, end=end, max_body=max_body
            )
        except _Stale:
            sock.close()
            raise Unanswered("the connection closed before an answer") from None

    def _message(
        self, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes | None
    ) -> bytes:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._host}"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        head = "\r\n".join(lines)
        breaks = len(lines) - 1
        if head.count("\r") != breaks or head.count("\n") != breaks or "\x00" in head:
            raise ValueError("request line or header: a line break or NUL inside")
        try:
            message = (head + "\r\n\r\n").encode("latin-1")
        except UnicodeEncodeError:
            message = b""
        if not message:
            # Raised outside the handler: the encoding error, which carries the whole head (the
            # Authorization header, a SAS) in its args, is not kept as this one's context.
            raise ValueError("request line or header: not Latin-1")
        return message + body if body else message

    # -- connections ---------------------------------------------------------------------------------------------

    def _take_idle(self) -> socket.socket | None:
        """The most recently used idle connection still fresh, open and silent, or None."""
        while True:
            with self._lock:
                if not self._idle:
                    return None
                sock, until = self._idle.pop()
            if time.monotonic() < until:
                try:
                    readable = wait_for_read(sock, timeout=0.0)
                except OSError:
                    readable = True
                if not readable:
                    return sock
            sock.close()

    def _give_back(self, sock: socket.socket, keep_for: float) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle and keep_for > 0:
                self._idle.append((sock, time.monotonic() + keep_for))
                return
        sock.close()

    def _connect(self, connect_timeout: float, end: float) -> socket.socket:
        """A new connection (TLS done for https), each address tried in turn, none past `end`.
        Name resolution itself is the system resolver's, bounded by its own timeouts."""
        if end - time.monotonic() <= 0:
            raise Unanswered("no time left to connect", timed_out=True)
        with self._lock:
            self.opened += 1
        try:
            addresses = socket.getaddrinfo(
                self._host_name, self._port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except OSError as exc:
            raise Unanswered(f"connection failed: {type(exc).__name__}") from None
        failure = "connection failed: no address"
        for family, kind, proto, _, address in addresses:
            left = end - time.monotonic()
            if left <= 0:
                raise Unanswered("no connection in time", timed_out=True)
            try:
                sock = socket.socket(family, kind, proto)
            except OSError as exc:  # out of file descriptors, say
                raise Unanswered(f"connection failed: {type(exc).__name__}") from None
            try:
                sock.settimeout(min(connect_timeout, left))
                sock.connect(address)
            except TimeoutError:
                sock.close()
                failure = "no connection in time"
                continue
            except OSError as exc:
                sock.close()
                failure = f"connection failed: {type(exc).__name__}"
                continue
            return self._ready(sock, connect_timeout, end)
        raise Unanswered(failure, timed_out=failure.startswith("no connection in time"))

    def _ready(self, sock: socket.socket, connect_timeout: float, end: float) -> socket.socket:
        """`sock` with TCP_NODELAY, and wrapped in TLS for https (the handshake done by `end`)."""
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock.settimeout(max(0.001, min(connect_timeout, end - time.monotonic())))
                # A TCP close without TLS's close_notify is an error, not the end of an answer
                # (RFC 9112 §9.8): suppress_ragged_eofs=False.
                sock = self._tls.wrap_socket(
                    sock, server_hostname=self._host_name, suppress_ragged_eofs=False
                )
        except TimeoutError:
            sock.close()
            raise Unanswered("no TLS handshake in time", timed_out=True) from None
        except OSError as exc:
            sock.close()
            raise Unanswered(f"connection failed: {type(exc).__name__}") from None
        return sock

    # -- one exchange --------------------------------------------------------------------------------------------

    def _exchange(
        self,
        sock: socket.socket,
        method: str,
        message: bytes,
        *,
        read_timeout: float,
        end: float,
        max_body: int,
    ) -> Answer:
        """Send `message` on `sock` and read the answer; `sock` goes back to the idle list or is
        closed. `_Stale` (the caller closes `sock`) when the connection ended before any byte of
        an answer."""
        reader = _Reader(sock, read_timeout, end)
        try:
            if self._on_send is not None:
                self._on_send(method)
            try:
                reader.arm()
                sock.sendall(message)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError):
                raise _Stale from None
            answer, keep_for = _read_answer(reader, method, max_body)
        except _Stale:
            raise
        except TimeoutError:
            sock.close()
            raise Unanswered("no answer in time", timed_out=True) from None
        except Unanswered:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            raise Unanswered(f"connection failed: {type(exc).__name__}") from None
        except BaseException:
            sock.close()
            raise
        if reader.pending:
            sock.close()
        else:
            self._give_back(sock, keep_for)
        return answer


def _close_all(idle: list[tuple[socket.socket, float]]) -> None:
    for sock, _ in idle:
        sock.close()


class _Stale(Exception):
    """The connection ended before the first byte of an answer."""


class _Reader:
    """Buffered reads from one socket, each bounded by the read timeout and the request's end."""

    def __init__(self, sock: socket.socket, read_timeout: float, end: float) -> None:
        self._sock = sock
        self._read_timeout = read_timeout
        self._end = end
        self._buffer = bytearray()
        self.received = 0

    @property
    def pending(self) -> bool:
        """Bytes received beyond the answer (a server talking out of turn)."""
        return bool(self._buffer)

    def arm(self) -> None:
        """Bound the socket's next operation by the read timeout and what is left until the end."""
        left = self._end - time.monotonic()
        if left <= 0:
            raise Unanswered("no answer in time", timed_out=True)
        self._sock.settimeout(min(self._read_timeout, left))

    def _fill(self) -> bool:
        """Read more into the buffer; False at the end of the stream."""
        self.arm()
        try:
            data = self._sock.recv(_RECV_BYTES)
        except (ConnectionResetError, ssl.SSLEOFError):
            if self.received == 0:
                raise _Stale from None
            raise Unanswered("the connection was cut off") from None
        if not data:
            if self.received == 0:
                raise _Stale
            return False
        self.received += len(data)
        self._buffer += data
        return True

    def head(self) -> bytes:
        """An answer's head, up to (not including) the empty line that ends it."""
        return self._through(
            b"\r\n\r\n",
            MAX_HEAD_BYTES,
            ended="the answer ended inside its head",
            too_long=f"answer head larger than {MAX_HEAD_BYTES} bytes",
        )

    def line(self, limit: int) -> bytes:
        """The next line without its CRLF, at most `limit` bytes."""
        return self._through(
            b"\r\n",
            limit,
            ended="the answer ended inside a chunk",
            too_long="a chunk line too long",
        )

    def _through(self, mark: bytes, limit: int, *, ended: str, too_long: str) -> bytes:
        """What comes before the next `mark` (at most `limit` bytes); the mark is consumed too."""
        while True:
            found = self._buffer.find(mark)
            if found >= 0:
                if found > limit:
                    break
                data = bytes(self._buffer[:found])
                del self._buffer[: found + len(mark)]
                return data
            if len(self._buffer) > limit:
                break
            if not self._fill():
                raise Unanswered(ended)
        raise Unanswered(too_long)

    def take(self, count: int, into: bytearray) -> None:
        """Move exactly `count` bytes into `into`."""
        while len(self._buffer) < count:
            if not self._fill():
                raise Unanswered("the answer ended before its length")
        into += self._buffer[:count]
        del self._buffer[:count]

    def exactly(self, count: int) -> bytes:
        data = bytearray()
        self.take(count, data)
        return bytes(data)

    def to_close(self, limit: int) -> bytes:
        while len(self._buffer) <= limit and self._fill():
            pass
        if len(self._buffer) > limit:
            raise Unanswered(f"answer larger than {limit} bytes")
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


def _read_answer(reader: _Reader, method: str, max_body: int) -> tuple[Answer, float]:
    """The answer, and how long its connection may wait idle for another request (0: close it)."""
    for _ in range(MAX_INTERIM_ANSWERS + 1):
        version, status, headers = _head(reader.head())
        if not 100 <= status < 200:
            break
    else:
        raise Unanswered("too many interim answers")
    keep_for = _keep_for(version, headers)
    if method == "HEAD" or status in _NO_BODY_STATUS:
        return Answer(status, headers, b""), keep_for
    if "transfer-encoding" in headers:
        coding = _tokens(headers["transfer-encoding"])
        if not coding:
            raise Unanswered("an empty Transfer-Encoding")
        if coding[-1] != "chunked":
            return Answer(status, headers, reader.to_close(max_body)), 0.0
        if "content-length" in headers:  # RFC 9112 §6.3 (3): chunks win; the connection goes
            keep_for = 0.0
        return Answer(status, headers, _chunked(reader, max_body)), keep_for
    if "content-length" in headers:
        values = {value.strip(" \t") for value in headers["content-length"].split(",")}
        length = values.pop() if len(values) == 1 else ""
        if not length.isascii() or not length.isdigit():
            raise Unanswered("a malformed Content-Length")
        if len(length.lstrip("0")) > len(str(max_body)) or int(length) > max_body:
            raise Unanswered(f"answer larger than {max_body} bytes")
        return Answer(status, headers, reader.exactly(int(length))), keep_for
    return Answer(status, headers, reader.to_close(max_body)), 0.0


def _keep_for(version: str, headers: dict[str, str]) -> float:
    """How long a connection may stay idle after this answer: 0 for HTTP/1.0 or ``Connection:
    close``; else `MAX_IDLE_SECONDS`, or less when ``Keep-Alive: timeout=N`` says the server
    closes sooner (a second's margin, so the race with its close is rare)."""
    if version != "HTTP/1.1" or "close" in _tokens(headers.get("connection", "")):
        return 0.0
    advertised = _KEEP_ALIVE_TIMEOUT.search(headers.get("keep-alive", ""))
    if advertised is None:
        return MAX_IDLE_SECONDS
    return min(MAX_IDLE_SECONDS, int(advertised.group(1)) - _KEEP_ALIVE_MARGIN)


def _head(block: bytes) -> tuple[str, int, dict[str, str]]:
    """Version, status and header fields of one answer head (its empty line already removed)."""
    text = block.decode("latin-1")
    crlf = text.count("\r\n")
    if text.count("\r") != crlf or text.count("\n") != crlf or "\x00" in text:
        raise Unanswered("a malformed header line")  # a bare CR or LF, or a NUL
    status_line, *fields = text.split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if (
        version not in ("HTTP/1.1", "HTTP/1.0")
        or len(code) != 3
        or not code.isascii()
        or not code.isdigit()
        or not 100 <= int(code) <= 599
        or rest[3:4] not in ("", " ")
    ):
        raise Unanswered("not an HTTP/1.x answer")
    headers: dict[str, str] = {}
    for field in fields:
        name, colon, value = field.partition(":")
        if not colon or not name or name != name.strip() or " " in name or "\t" in name:
            raise Unanswered("a malformed header line")
        name = name.lower()
        value = value.strip(" \t")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return version, int(code), headers


def _chunked(reader: _Reader, max_body: int) -> bytes:
    """A chunked body (RFC 9112 §7.1), its trailer fields read and dropped."""
    body = bytearray()
    while True:
        size_text = reader.line(_MAX_CHUNK_LINE).split(b";", 1)[0].rstrip(b" \t")
        digits = size_text.lstrip(b"0")
        if not size_text or len(digits) > 16 or size_text.strip(b"0123456789abcdefABCDEF"):
            raise Unanswered("a malformed chunk size")
        size = int(digits or b"0", 16)
        if size == 0:
            break
        if len(body) + size > max_body:
            raise Unanswered(f"answer larger than {max_body} bytes")
        reader.take(size, body)
        if reader.exactly(2) != b"\r\n":
            raise Unanswered("a chunk without its CRLF")
    trailers = 0
    while line := reader.line(_MAX_CHUNK_LINE):  # trailer fields, up to the empty line
        trailers += len(line) + 2
        if b":" not in line or trailers > MAX_HEAD_BYTES:
            raise Unanswered("malformed or too many trailer fields")
    return bytes(body)


def _tokens(value: str) -> list[str]:
    """A comma-separated header value as lower-case tokens."""
    return [token.strip(" \t").lower() for token in value.split(",") if token.strip(" \t")]


__all__ = ["MAX_HEAD_BYTES", "MAX_IDLE_SECONDS", "Answer", "Unanswered", "Wire"]
