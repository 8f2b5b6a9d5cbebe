"""A WebSocket client for the MQTT-over-WebSockets tests: wsproto over an asyncio stream.

It speaks what the SDKs speak (a GET upgrade to `/$iothub/websocket` offering `mqtt`, masked
binary frames) and, for the tests that need it, what they never send: frames split anywhere,
text frames, raw bytes after the handshake.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from emulator.mqtt import Packet
from emulator.mqtt.websocket import WEBSOCKET_PATH
from tests.emulator.mqtt.client_engine import ClientEngine


class WsPeer:
    """One client connection: the handshake's outcome, then frames both ways."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.engine = ClientEngine()
        self.status = 0  # 101 once accepted, else the refusal's status
        self.subprotocol: str | None = None
        self.reject_body = b""
        self.close_code: int | None = None
        self.pongs = 0
        self._data = bytearray()

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        path: str = WEBSOCKET_PATH,
        subprotocols: Sequence[str] = ("mqtt",),
        ssl_context: ssl.SSLContext | None = None,
        host_header: str | None = None,
    ) -> WsPeer:
        """Connect and run the opening handshake (its outcome in `status`)."""
        reader, writer = await asyncio.open_connection(host, port, ssl=ssl_context)
        peer = cls(reader, writer)
        request = Request(
            host=host_header or f"{host}:{port}", target=path, subprotocols=list(subprotocols)
        )
        await peer.send_raw(peer.ws.send(request))
        async with asyncio.timeout(5):
            while peer.status == 0:
                if not await peer._pump():
                    break
        return peer

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, data: bytes, *, pieces: int = 1) -> None:
        """`data` as one binary message in `pieces` frames (split at even places)."""
        step = max(1, -(-len(data) // pieces))
        chunks = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
        out = b"".join(
            self.ws.send(Message(data=chunk, message_finished=index == len(chunks) - 1))
            for index, chunk in enumerate(chunks)
        )
        await self.send_raw(out)

    async def send_text(self, text: str) -> None:
        await self.send_raw(self.ws.send(TextMessage(data=text)))

    async def ping(self) -> None:
        await self.send_raw(self.ws.send(Ping(b"hi")))

    async def packets(self, count: int = 1, *, within: float = 5) -> list[Packet]:
        """The next `count` MQTT packets the server sent (however it framed them)."""
        got: list[Packet] = []
        async with asyncio.timeout(within):
            while len(got) < count:
                got += self.engine.receive_data(bytes(self._data))
                self._data.clear()
                if len(got) >= count:
                    break
                assert await self._pump(), f"connection ended after {got}"
        return got

    async def quiet(self, seconds: float) -> bool:
        """True when the server sent no data for `seconds`."""
        try:
            async with asyncio.timeout(seconds):
                while not self._data:
                    if not await self._pump():
                        return not self._data
        except TimeoutError:
            return True
        return False

    async def closed(self, within: float = 5) -> bool:
        """Wait until the server ends the connection (a close frame or EOF); True then."""
        async with asyncio.timeout(within):
            while await self._pump():
                pass
        return True

    async def _pump(self) -> bool:
        """Read once and handle the events; False at end of stream."""
        try:
            data = await self.reader.read(65536)
        except (ConnectionError, ssl.SSLError):
            data = b""
        if not data:
            self.ws.receive_data(None)
            return False
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.status, self.subprotocol = 101, event.subprotocol
            elif isinstance(event, RejectConnection):
                self.status = event.status_code
            elif isinstance(event, RejectData):
                self.reject_body += event.data
            elif isinstance(event, BytesMessage):
                self._data += event.data
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
            elif isinstance(event, Ping):
                await self.send_raw(self.ws.send(event.response()))
            elif type(event).__name__ == "Pong":
                self.pongs += 1
        return True

    def close(self) -> None:
        self.writer.close()
