"""Sans-IO MQTT 3.1.1 for the emulator's server side: a codec and a per-connection engine.

- `packets`: the control packets as frozen values, and the protocol's constants.
- `codec`: `decode(buffer) -> (packet, consumed)` / `encode(packet) -> bytes`.
- `connection`: `ServerConnection`, bytes in -> events out, `send(packet)` -> bytes.
- `errors`: the exception tree.
- `server`: the asyncio shell (TLS listener, one engine per connection, routing each CONNECT to
  an `endpoints.MqttEndpoint`); `websocket`: the same shell's WebSocket transport (wsproto
  framing, for the HTTPS port). The only modules here that do I/O, and not re-exported below.

The engine opens no socket, reads no clock and authenticates no one: the shell does the I/O and
the endpoints decide. Why a codec of our own: the protocol is the product here, and the sans-IO
MQTT libraries of the field speak MQTT 5 only (agronholm/mqttproto refuses a CONNECT whose protocol
level is not 5), while every Azure IoT device SDK speaks 3.1.1 (level 4).
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
