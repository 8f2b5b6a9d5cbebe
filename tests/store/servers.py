"""Loopback servers for the store's HTTP client tests (`test_rest`, `test_wire`): every connection
accepted goes to a handler on a thread of its own, and leaving the `with` block stops accepting,
wakes the handlers (their connections shut down) and waits for them."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

Handler = Callable[[socket.socket, int, threading.Event], None]
"""``handle(conn, index, stop)``: one connection (the `index`-th accepted), until it is done or
`stop` is set; an OSError ends it quietly, and the connection is closed afterwards."""


@contextmanager
def serving(bind: str, handle: Handler) -> Iterator[int]:
    """Serve on `bind`, any free port (yielded), each connection through `handle`."""
    listener = socket.create_server((bind, 0))
    stop = threading.Event()
    accepted: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def run(conn: socket.socket, index: int) -> None:
        with conn, suppress(OSError):
            handle(conn, index, stop)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)
            thread = threading.Thread(target=run, args=(conn, len(accepted) - 1), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        listener.close()
        acceptor.join(10)
        for conn in accepted:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes a handler waiting in recv()
        for thread in threads:
            thread.join(10)


def read_request(conn: socket.socket, buffer: bytearray) -> str | None:
    """One request (its head and a Content-Length body) off `buffer` and `conn`; its request line,
    or None when the connection ends first."""
    while b"\r\n\r\n" not in buffer:
        data = conn.recv(65536)
        if not data:
            return None
        buffer += data
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end]).decode("latin-1")
    del buffer[:end]
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
    while len(buffer) < length:
        data = conn.recv(65536)
        if not data:
            return None
        buffer += data
    del buffer[:length]
    return head.split("\r\n", 1)[0]
