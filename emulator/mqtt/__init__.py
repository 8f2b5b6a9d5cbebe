"""Sans-IO MQTT 3.1.1 for the emulator's server side: a codec and a per-connection engine.

- `packets`: the control packets as frozen values, and the protocol's constants.
- `codec`: `decode(buffer) -> (packet, consumed)` / `encode(packet) -> bytes`.
- `connection`: `ServerConnection`, bytes in -> events out, `send(packet)` -> bytes.
- `errors`: the exception tree.

Nothing here opens a socket, reads a clock or authenticates anyone; the asyncio shell in
`emulator.mqtt.server` does the I/O and the endpoints decide.
"""

from emulator.mqtt.codec import DEFAULT_MAX_PACKET_SIZE, decode, encode
from emulator.mqtt.connection import ConnectionState, Event, ProtocolViolation, ServerConnection
from emulator.mqtt.errors import (
    LocalProtocolError,
    MalformedPacket,
    MqttError,
    NeedMoreData,
    PacketTooLarge,
    ProtocolError,
    UnsupportedFeature,
)
from emulator.mqtt.packets import (
    SUBACK_FAILURE,
    Connack,
    ConnackCode,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
)

__all__ = [
    "DEFAULT_MAX_PACKET_SIZE",
    "SUBACK_FAILURE",
    "Connack",
    "ConnackCode",
    "Connect",
    "ConnectionState",
    "Disconnect",
    "Event",
    "LocalProtocolError",
    "MalformedPacket",
    "MqttError",
    "NeedMoreData",
    "Packet",
    "PacketTooLarge",
    "PacketType",
    "Pingreq",
    "Pingresp",
    "ProtocolError",
    "ProtocolViolation",
    "Puback",
    "Publish",
    "ServerConnection",
    "Suback",
    "Subscribe",
    "Unsuback",
    "Unsubscribe",
    "UnsupportedFeature",
    "Will",
    "decode",
    "encode",
]
