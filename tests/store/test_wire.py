"""`store.wire`: keep-alive, framing (length, chunks, close), stale connections, time bounds, TLS
and thread safety, against Azurite and against scripted servers that answer any bytes; Hypothesis
over chunk layouts and malformed answers."""

from __future__ import annotations

import gc
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.certs import ensure_certificates, server_ssl_context
from store.rest import TableRest
from store.wire import MAX_HEAD_BYTES, Answer, Unanswered, Wire
from tests.azurite import ACCOUNT, ACCOUNT_KEY, Azurite, fresh_prefix
from tests.store.servers import read_request, serving

BIND = "127.55.0.2"  # this module's loopback address
TIMEOUT = 2.0


def ask(
    wire: Wire, method: str = "GET", body: bytes | None = None, *, within: float = 5.0
) -> Answer:
    return wire.request(
        method,
        "/t",
        [("Accept", "application/json")],
        body,
        connect_timeout=TIMEOUT,
        read_timeout=TIMEOUT,
        end=time.monotonic() + within,
        max_body=1 << 20,
    )


DROP = "drop"  # read the next request and close without an answer
CLOSE = "close"  # close the connection now


@dataclass
class Scripted:
    """A server on BIND: for each connection, in order, a list of steps: an answer (bytes) to the
    next request it reads, DROP or CLOSE. After the last step it keeps the connection open until
    the client closes it. Notes the request lines it read and the connections that ended."""

    connections: list[list[bytes | str]]
    port: int = 0
    requests: list[str] = field(default_factory=list)
    ended: int = 0


@contextmanager
def scripted(
    *connections: list[bytes | str], tls: ssl.SSLContext | None = None
) -> Iterator[Scripted]:
    script = Scripted([list(answers) for answers in connections])

    def handle(conn: socket.socket, index: int, stop: threading.Event) -> None:
        try:
            if index >= len(script.connections):
                return
            if tls is not None:
                conn = tls.wrap_socket(conn, server_side=True)
            conn.settimeout(10)
            buffer = bytearray()
            for step in script.connections[index]:
                if step == CLOSE:
                    return
                line = read_request(conn, buffer)
                if line is None:
                    return
                script.requests.append(line)
                if step == DROP:
                    return
                assert isinstance(step, bytes)
                conn.sendall(step)
            while conn.recv(65536):  # open until the client is done with it
                pass
        finally:
            conn.close()
            script.ended += 1

    with serving(BIND, handle) as port:
        script.port = port
        yield script


def ok(body: bytes = b"{}", *extra: str) -> bytes:
    head = "".join(f"{line}\r\n" for line in extra)
    return f"HTTP/1.1 200 OK\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def chunked(parts: list[bytes], *, extension: str = "", trailers: str = "") -> bytes:
    body = b"".join(f"{len(part):x}{extension}\r\n".encode() + part + b"\r\n" for part in parts)
    return (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + body
        + f"0{extension}\r\n{trailers}\r\n".encode()
    )


# -- against Azurite -----------------------------------------------------------------------------------------------


def test_one_connection_carries_every_request_to_azurite(azurite: Azurite) -> None:
    """Fifty point reads and upserts through TableRest open one connection, kept alive, and read
    back what was written."""
    from store.tables import TableStore  # noqa: PLC0415

    store = TableStore(azurite.connection_string, table_prefix=fresh_prefix(), timeout_seconds=5)
    store.get_device("warm-up")  # the table exists
    rest = store._rest
    assert rest is not None
    try:
        for n in range(25):
            rest.upsert({"PartitionKey": "p", "RowKey": f"r{n}", "n": n})
            found = rest.read("p", f"r{n}")
            assert found is not None
            assert found.properties["n"] == n
        assert rest._wire.opened == 1
    finally:
        store.close()


def test_threads_share_one_wire_to_azurite(azurite: Azurite) -> None:
    """Eight threads reading at once through one TableRest: every read answered, no more
    connections than threads."""
    from store.tables import TableStore  # noqa: PLC0415

    store = TableStore(azurite.connection_string, table_prefix=fresh_prefix(), timeout_seconds=5)
    store.get_device("warm-up")
    rest = store._rest
    assert rest is not None
    try:
        rest.upsert({"PartitionKey": "p", "RowKey": "r", "n": 1})
        with ThreadPoolExecutor(8) as pool:
            found = list(pool.map(lambda _: rest.read("p", "r"), range(200)))
        assert all(entity is not None and entity.properties["n"] == 1 for entity in found)
        assert 1 <= rest._wire.opened <= 8
    finally:
        store.close()


# -- framing ---------------------------------------------------------------------------------------------------------


def test_length_chunks_and_close_delimited_bodies() -> None:
    """A Content-Length body, a chunked body with extensions and trailers (both kept alive), then
    a body delimited by the connection's close (not kept)."""
    answers: list[bytes | str] = [
        ok(b'{"a":1}'),
        chunked([b'{"b"', b":2}"], extension=";ext=1", trailers="X-Trailer: t\r\n"),
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nto the end",
        CLOSE,
    ]
    with scripted(answers) as server:
        wire = Wire("http", BIND, server.port)
        assert ask(wire).body == b'{"a":1}'
        assert ask(wire).body == b'{"b":2}'
        last = ask(wire)
        assert last.body == b"to the end"
        assert last.headers["content-type"] == "text/plain"
        assert wire.opened == 1
        wire.close()
    assert server.requests == ["GET /t HTTP/1.1"] * 3


def test_interim_answers_are_skipped_and_204_has_no_body() -> None:
    with scripted(
        [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nETag: e\r\n\r\n", ok()]
    ) as server:
        wire = Wire("http", BIND, server.port)
        answer = ask(wire, "PUT", b"{}")
        assert (answer.status, answer.body, answer.headers["etag"]) == (204, b"", "e")
        assert ask(wire).status == 200
        assert wire.opened == 1
        wire.close()


def test_connection_close_and_http_1_0_are_not_reused() -> None:
    with scripted(
        [ok(b"1", "Connection: close")],
        [b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n2"],
        [ok(b"3")],
    ) as server:
        wire = Wire("http", BIND, server.port)
        assert [ask(wire).body for _ in range(3)] == [b"1", b"2", b"3"]
        assert wire.opened == 3
        wire.close()


def test_a_transfer_coding_other_than_chunked_is_read_to_the_close() -> None:
    """``Transfer-Encoding: gzip`` (not chunked last): the body runs to the connection's close and
    comes back as sent; the connection is not reused."""
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    with scripted([answer, CLOSE], [ok(b"next")]) as server:
        wire = Wire("http", BIND, server.port)
        assert ask(wire).body == b"3\r\nabc\r\n0\r\n\r\n"
        assert ask(wire).body == b"next"
        assert wire.opened == 2
        wire.close()


def test_repeated_headers_are_joined() -> None:
    with scripted([ok(b"", "X-A: 1", "x-a: 2")]) as server:
        wire = Wire("http", BIND, server.port)
        assert ask(wire).headers["x-a"] == "1, 2"
        wire.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(st.binary(min_size=1, max_size=300), max_size=6),
    extension=st.sampled_from(["", ";a=b", '; q="x"']),
    trailers=st.sampled_from(["", "T: 1\r\n", "T: 1\r\nU: 2\r\n"]),
    then=st.binary(max_size=50),
)
def test_any_chunk_layout_reads_back_the_body(
    parts: list[bytes], extension: str, trailers: str, then: bytes
) -> None:
    """However the body is cut into chunks, with extensions and trailers, it reads back whole, and
    the connection carries the next request."""
    with scripted([chunked(parts, extension=extension, trailers=trailers), ok(then)]) as server:
        wire = Wire("http", BIND, server.port)
        assert ask(wire).body == b"".join(parts)
        assert ask(wire).body == then
        assert wire.opened == 1
        wire.close()


MALFORMED = [
    b"SSH-2.0-OpenSSH\r\n\r\n",
    b"HTTP/2 200 OK\r\n\r\n",
    b"HTTP/1.1 20 OK\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nab",
    b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nx",  # a superscript two: a digit, not ASCII
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 20 + b"\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3",
    b"HTTP/1.1 100 Continue\r\n\r\n" * (10),
    b"HTTP/1.1 000 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nETag: a\nX-Injected: b\r\nContent-Length: 0\r\n\r\n",  # a bare LF
    b"HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n",  # a bare CR
    b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: " + b"1" * 5000 + b"\r\n\r\n",  # past int()'s digits
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\nContent-Length: 1\r\n\r\nx",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n 1\r\nx\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n",
]


@pytest.mark.parametrize("answer", MALFORMED, ids=range(len(MALFORMED)))
def test_a_malformed_answer_is_unanswered_and_its_connection_closed(answer: bytes) -> None:
    """Each malformed answer is Unanswered, naming neither host nor bytes of the answer, and the
    next request takes a new connection."""
    with scripted([answer, CLOSE], [ok(b"next")]) as server:
        wire = Wire("http", BIND, server.port)
        with pytest.raises(Unanswered) as caught:
            ask(wire)
        assert BIND not in caught.value.reason
        assert "OpenSSH" not in caught.value.reason
        assert ask(wire).body == b"next"
        assert wire.opened == 2
        wire.close()


def test_chunks_and_length_together_read_by_chunks_and_the_connection_closes() -> None:
    """Transfer-Encoding and Content-Length both (RFC 9112 §6.3: the chunks win, and the
    connection is not used again)."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer += b"5\r\nabcde\r\n0\r\n\r\n"
    with scripted([answer], [ok(b"next")]) as server:
        wire = Wire("http", BIND, server.port)
        assert ask(wire).body == b"abcde"
        assert ask(wire).body == b"next"
        assert wire.opened == 2
        wire.close()


def test_a_size_in_leading_zeros_and_one_byte_chunks_cost_no_more_than_the_body() -> None:
    """A chunk size padded with zeros is read; 50,000 one-byte chunks make one body, not a list of
    50,000 objects (peak Python memory well under what a list of them would take)."""
    import tracemalloc  # noqa: PLC0415

    padded = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"0" * 20
        + b"2\r\nab\r\n0\r\n\r\n"
    )
    many = chunked([b"x"] * 50_000)
    with scripted([padded, many]) as server:
        wire = Wire("http", BIND, server.port)
        assert ask(wire).body == b"ab"
        tracemalloc.start()
        try:
            assert ask(wire).body == b"x" * 50_000
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        wire.close()
    assert peak < 1_000_000


def test_bounds_on_head_and_body() -> None:
    """A head past MAX_HEAD_BYTES and bodies past the caller's limit (by length or by chunks) are
    Unanswered without being read whole."""
    huge_head = b"HTTP/1.1 200 OK\r\n" + b"X: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n"
    by_length = b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n"
    by_chunks = chunked([b"x" * 600_000, b"y" * 600_000])
    for answer, reason in [
        (huge_head, "head larger"),
        (by_length, "larger"),
        (by_chunks, "larger"),
    ]:
        with scripted([answer]) as server:
            wire = Wire("http", BIND, server.port)
            with pytest.raises(Unanswered, match=reason):
                ask(wire)
            wire.close()


# -- connections that end --------------------------------------------------------------------------------------------


def test_an_idle_connection_closed_by_the_server_is_replaced() -> None:
    """The server closes a kept-alive connection while it is idle: the next request notices
    before sending and takes a new connection, so even a POST (never sent twice) goes through."""
    with scripted([ok(b"1"), CLOSE], [ok(b"2")]) as server:
        wire = Wire("http", BIND, server.port)
        assert ask(wire).body == b"1"
        deadline = time.monotonic() + 5
        while server.ended < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ask(wire, "POST", b"{}").body == b"2"
        assert wire.opened == 2
        wire.close()


def test_a_connection_dropped_on_a_request_resends_a_get_but_never_a_post() -> None:
    """The race the idle check cannot see: the server reads the next request and closes without
    an answer. A GET is sent again on a new connection; a POST is Unanswered and sent once."""
    with scripted([ok(b"1"), DROP], [ok(b"2")]) as server:
        wire = Wire("http", BIND, server.port)
        assert ask(wire).body == b"1"
        assert ask(wire).body == b"2"
        wire.close()
    assert server.requests == ["GET /t HTTP/1.1"] * 3
    with scripted([ok(b"1"), DROP], [ok(b"2")]) as server:
        wire = Wire("http", BIND, server.port)
        assert ask(wire).body == b"1"
        with pytest.raises(Unanswered, match="closed before an answer"):
            ask(wire, "POST", b"{}")
        wire.close()
    assert server.requests == ["GET /t HTTP/1.1", "POST /t HTTP/1.1"]


def test_an_idle_connection_is_not_kept_past_what_the_server_said() -> None:
    """``Keep-Alive: timeout=2``: reused at once, but not once it has been idle longer than the
    server keeps it (less a second's margin), so a POST never meets a connection the server is
    about to close."""
    answer = ok(b"1", "Keep-Alive: timeout=2")
    with scripted([answer, answer], [ok(b"3")]) as server:
        wire = Wire("http", BIND, server.port)
        assert ask(wire).body == b"1"
        assert ask(wire).body == b"1"
        assert wire.opened == 1
        time.sleep(1.2)
        assert ask(wire, "POST", b"{}").body == b"3"
        assert wire.opened == 2
        wire.close()


def test_a_failing_send_hook_leaves_no_connection_open() -> None:
    """An exception from `on_send` reaches the caller; the connection it was about to use is
    closed (the server sees the close), not leaked."""

    def refuse(method: str) -> None:
        raise RuntimeError("counting failed")

    with scripted([ok(), ok()]) as server:
        wire = Wire("http", BIND, server.port)
        ask(wire)
        wire._on_send = refuse
        with pytest.raises(RuntimeError):
            ask(wire)
        deadline = time.monotonic() + 5
        while server.ended < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.ended == 1
        wire.close()


def test_the_connect_ends_at_the_end_whatever_the_addresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A name with two addresses, neither answering (a listener whose queue is full drops SYNs):
    the connect gives up at the request's end, not after a timeout per address."""
    hole = socket.socket()
    hole.bind((BIND, 0))
    hole.listen(0)
    port = hole.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex((BIND, port))
        fillers.append(filler)
    time.sleep(0.1)
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: real(*a, **k) * 2)
    wire = Wire("http", BIND, port)
    started = time.monotonic()
    try:
        with pytest.raises(Unanswered) as caught:
            wire.request(
                "GET",
                "/t",
                [],
                None,
                connect_timeout=1.0,
                read_timeout=1.0,
                end=started + 1.2,
                max_body=100,
            )
        took = time.monotonic() - started
    finally:
        for filler in fillers:
            filler.close()
        hole.close()
    assert caught.value.timed_out
    assert took < 1.7


def test_no_file_descriptor_left_is_unanswered(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process out of file descriptors cannot make a socket: Unanswered, not an OSError."""

    def exhausted(*args: object, **kwargs: object) -> socket.socket:
        raise OSError(24, "Too many open files")

    wire = Wire("http", BIND, 9)
    monkeypatch.setattr(socket, "socket", exhausted)
    with pytest.raises(Unanswered, match="connection failed: OSError"):
        ask(wire)


def test_nobody_listening_is_unanswered() -> None:
    with socket.create_server((BIND, 0)) as probe:
        port = probe.getsockname()[1]
    wire = Wire("http", BIND, port)
    with pytest.raises(Unanswered, match="connection failed: ConnectionRefusedError"):
        ask(wire)


# -- time ----------------------------------------------------------------------------------------------------------


@contextmanager
def dribbling(interval: float) -> Iterator[int]:
    """A server that answers one byte every `interval` seconds, for ever."""

    def handle(conn: socket.socket, index: int, stop: threading.Event) -> None:
        conn.recv(65536)
        for byte in ok(b"x" * 1000):
            if stop.wait(interval):
                return
            conn.sendall(bytes([byte]))

    with serving(BIND, handle) as port:
        yield port


def test_a_peer_answering_a_byte_at_a_time_cannot_stretch_a_request_past_its_end() -> None:
    """Each byte comes well within the read timeout, but the request ends at its end."""
    with dribbling(0.02) as port:
        wire = Wire("http", BIND, port)
        started = time.monotonic()
        with pytest.raises(Unanswered) as caught:
            ask(wire, within=0.5)
        took = time.monotonic() - started
        wire.close()
    assert caught.value.timed_out
    assert 0.4 < took < 3


def test_a_silent_peer_is_given_up_at_the_end_not_after_the_read_timeout() -> None:
    """A server that never answers: the request ends at its end (0.3 s), well before the read
    timeout (2 s)."""
    with scripted([]) as server:
        wire = Wire("http", BIND, server.port)
        started = time.monotonic()
        with pytest.raises(Unanswered) as caught:
            ask(wire, within=0.3)
        took = time.monotonic() - started
        wire.close()
    assert caught.value.timed_out
    assert took < 1.5


def test_no_time_left_sends_nothing() -> None:
    with scripted([ok()]) as server:
        wire = Wire("http", BIND, server.port)
        with pytest.raises(Unanswered) as caught:
            ask(wire, within=-1)
        assert caught.value.timed_out
        assert ask(wire).status == 200
        wire.close()
    assert server.requests == ["GET /t HTTP/1.1"]


# -- TLS -----------------------------------------------------------------------------------------------------------


def test_tls_is_verified(tmp_path: Path) -> None:
    """Over https a server whose certificate chains to a trusted CA and names the host answers;
    with the system's trust store (which does not hold the test CA) the connection fails, saying
    only the error's type."""
    paths = ensure_certificates(tmp_path, names=[BIND])
    trusting = ssl.create_default_context(cafile=str(paths.ca_cert))
    with scripted([ok(b"secure"), ok(b"again")], [], tls=server_ssl_context(paths)) as server:
        wire = Wire("https", BIND, server.port, tls=trusting)
        assert ask(wire).body == b"secure"
        assert ask(wire).body == b"again"
        assert wire.opened == 1
        wire.close()
        default = Wire("https", BIND, server.port)
        with pytest.raises(Unanswered, match="SSLCertVerificationError"):
            ask(default)


def test_a_tls_answer_cut_off_without_close_notify_is_unanswered(tmp_path: Path) -> None:
    """Over TLS a body that runs to the close must end with TLS's close_notify: a bare TCP close
    (which anyone on the path can forge) is an answer cut off, not a whole one (RFC 9112 §9.8)."""
    paths = ensure_certificates(tmp_path, names=[BIND])
    trusting = ssl.create_default_context(cafile=str(paths.ca_cert))
    answer = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"rows": [1, 2'
    with scripted([answer, CLOSE], tls=server_ssl_context(paths)) as server:
        wire = Wire("https", BIND, server.port, tls=trusting)
        with pytest.raises(Unanswered, match="cut off"):
            ask(wire)
        wire.close()


def test_a_header_outside_latin_1_is_refused_without_the_request_in_the_error() -> None:
    """The error names the problem; neither it nor its context holds the request's head (which
    carries the Authorization header or a SAS)."""
    wire = Wire("http", BIND, 9)
    with pytest.raises(ValueError, match="not Latin-1") as caught:
        wire.request(
            "GET",
            "/t?sig=SECRET",
            [("Authorization", "SharedKey a:SECRET"), ("X", "\u20ac")],
            None,
            connect_timeout=TIMEOUT,
            read_timeout=TIMEOUT,
            end=time.monotonic() + 1,
            max_body=100,
        )
    assert "SECRET" not in repr(caught.value)
    assert caught.value.__context__ is None
    assert wire.opened == 0


# -- TableRest on the wire -------------------------------------------------------------------------------------------


def test_table_rest_sends_host_length_and_one_write() -> None:
    """The request as the server reads it: request line, Host with the port, Content-Length of
    the body; Shared Key signed."""
    seen: list[bytes] = []

    def handle(conn: socket.socket, index: int, stop: threading.Event) -> None:
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(b"}"):
            data += conn.recv(65536)
        seen.append(data)
        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")

    with serving(BIND, handle) as port:
        rest = TableRest(
            account_url=f"http://{BIND}:{port}/{ACCOUNT}",
            table="t",
            credential=AzureNamedKeyCredential(ACCOUNT, ACCOUNT_KEY),
            api_version="2019-02-02",
            timeout=2,
        )
        rest.upsert({"PartitionKey": "p", "RowKey": "r", "n": 1})
        rest.close()
    head, _, body = seen[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == f"PUT /{ACCOUNT}/t(PartitionKey='p',RowKey='r') HTTP/1.1"
    fields = {
        name.lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:])
    }
    assert fields["host"] == f"{BIND}:{port}"
    assert int(fields["content-length"]) == len(body)
    assert fields["authorization"].startswith(f"SharedKey {ACCOUNT}:")
    assert ACCOUNT_KEY not in seen[0].decode()


def test_a_dropped_wire_closes_its_connections() -> None:
    """A Wire that is garbage collected without close() closes its idle connections: the server
    sees the close (and no ResourceWarning, which the suite turns into a failure)."""
    with scripted([ok()]) as server:
        wire = Wire("http", BIND, server.port)
        ask(wire)
        del wire
        gc.collect()
        deadline = time.monotonic() + 5
        while server.ended < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.ended == 1


@pytest.mark.parametrize(
    ("target", "header"),
    [("/t\r\nX: smuggled", ("A", "b")), ("/t", ("A", "b\r\nX: smuggled")), ("/t", ("A\n", "b"))],
)
def test_a_line_break_in_the_request_is_refused_before_sending(
    target: str, header: tuple[str, str]
) -> None:
    """No request is sent whose target or header would split into more lines."""
    with scripted([ok()]) as server:
        wire = Wire("http", BIND, server.port)
        with pytest.raises(ValueError, match="line break"):
            wire.request(
                "GET",
                target,
                [header],
                None,
                connect_timeout=TIMEOUT,
                read_timeout=TIMEOUT,
                end=time.monotonic() + 5,
                max_body=100,
            )
        assert wire.opened == 0
        wire.close()
