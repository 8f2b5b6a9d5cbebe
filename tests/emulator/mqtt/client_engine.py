"""A tiny sans-IO MQTT client for engine-to-engine tests: packets in and out, bytes out and in.

It uses the same codec as the server, so it checks the server engine's protocol behaviour, not the
codec (the codec has its own byte-level tests against hand-written vectors).
"""

from __future__ import annotations

from emulator.mqtt import (
    Connack,
    Connect,
    NeedMoreData,
    Packet,
    Puback,
    Publish,
    ServerConnection,
    Subscribe,
    decode,
    encode,
)


class ClientEngine:
    """The client side of one connection, enough for tests: no state machine, no I/O."""

    def __init__(self) -> None:
        self._inbox = bytearray()
        self._next_packet_id = 1

    def connect(
        self,
        client_id: str,
        *,
        username: str | None = None,
        password: bytes | None = None,
        keep_alive: int = 60,
        clean_session: bool = False,
    ) -> bytes:
        """CONNECT as the Azure SDK sends it (CleanSession 0 by default)."""
        return encode(
            Connect(
                client_id=client_id,
                username=username,
                password=password,
                keep_alive=keep_alive,
                clean_session=clean_session,
            )
        )

    def subscribe(self, topic_filter: str, qos: int = 1) -> bytes:
        """SUBSCRIBE to one filter, as the SDK does (one filter per packet)."""
        return encode(Subscribe(self._packet_id(), ((topic_filter, qos),)))

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> bytes:
        """PUBLISH at QoS 0 or 1."""
        packet_id = self._packet_id() if qos else None
        return encode(Publish(topic=topic, payload=payload, qos=qos, packet_id=packet_id))

    def puback(self, packet_id: int) -> bytes:
        """Acknowledge a server QoS 1 PUBLISH."""
        return encode(Puback(packet_id))

    def receive_data(self, data: bytes) -> list[Packet]:
        """Decode every complete packet the server sent."""
        self._inbox += data
        packets: list[Packet] = []
        while True:
            try:
                packet, used = decode(self._inbox)
            except NeedMoreData:
                return packets
            del self._inbox[:used]
            packets.append(packet)

    def _packet_id(self) -> int:
        packet_id = self._next_packet_id
        self._next_packet_id += 1
        return packet_id


def accepted_pair(client_id: str = "dev-001") -> tuple[ClientEngine, ServerConnection]:
    """A client and a server engine that have completed CONNECT / CONNACK 0."""
    client, server = ClientEngine(), ServerConnection()
    server.receive_data(client.connect(client_id, username="u", password=b"p"))
    client.receive_data(server.send(Connack(0)))
    return client, server
