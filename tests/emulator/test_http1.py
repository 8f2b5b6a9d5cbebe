"""The sans-IO HTTP/1.1 request parser: whole, byte by byte, pipelined, chunked, and refusals."""

from __future__ import annotations

import pytest

from emulator.http1 import HttpParseError, Request, RequestParser, render_response

PUT = (
    b"PUT /devices/dev%2D1?api-version=2021-04-12 HTTP/1.1\r\nHost: 127.0.0.3:8443\r\n"
    b"Content-Type: application/json\r\nContent-Length: 2\r\nAccept: a\r\nAccept: b\r\n\r\n{}"
)


def feed(parser: RequestParser, data: bytes, *, step: int) -> list[Request]:
    requests: list[Request] = []
    for start in range(0, len(data), step):
        requests.extend(parser.receive_data(data[start : start + step]))
    return requests


@pytest.mark.parametrize("step", [1, 7, 10_000])
def test_request_parsed_whole_or_in_pieces(step: int) -> None:
    """The same request comes out however the bytes are split."""
    [request] = feed(RequestParser(), PUT, step=step)
    assert request.method == "PUT"
    assert request.target == "/devices/dev%2D1?api-version=2021-04-12"
    assert request.headers["host"] == "127.0.0.3:8443"
    assert request.headers["accept"] == "a, b"
    assert request.body == b"{}"
    assert request.keep_alive


def test_pipelined_requests_and_trailing_bytes() -> None:
    """Two requests and the start of a third: two come out, the rest waits."""
    parser = RequestParser()
    requests = parser.receive_data(PUT + PUT + b"GET /x HTTP/1.1\r\n")
    assert len(requests) == 2
    assert parser.receive_data(b"Connection: close\r\n\r\n")[0].keep_alive is False


def test_chunked_body_with_extension_and_trailer() -> None:
    """Chunked bodies are reassembled; extensions and trailers are dropped."""
    data = (
        b"POST /devices/query HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'3;ext=1\r\n{"q\r\n2\r\n":\r\n0\r\nX-Trailer: 1\r\n\r\n'
    )
    [request] = feed(RequestParser(), data, step=1)
    assert request.body == b'{"q":'


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"NOT HTTP\r\n\r\n", 400),
        (b"GET http://x/ HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nbad header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n", 413),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 20_000, 431),
    ],
)
def test_malformed_or_oversized_input_is_refused(data: bytes, status: int) -> None:
    """Each kind of bad input gets its status, and the parser stays failed afterwards."""
    parser = RequestParser(max_body_bytes=1024)
    with pytest.raises(HttpParseError) as caught:
        parser.receive_data(data)
    assert caught.value.status == status
    with pytest.raises(HttpParseError):
        parser.receive_data(PUT)


def test_render_response_sets_length_and_close() -> None:
    """A response carries its Content-Length, and Connection: close when asked."""
    data = render_response(204, [("ETag", '"x"')], keep_alive=False)
    assert data == (
        b'HTTP/1.1 204 No Content\r\nETag: "x"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
    )
