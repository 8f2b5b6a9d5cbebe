"""Errors of the MQTT codec and engine.

    MqttError
    ├── NeedMoreData          the buffer ends inside a packet: feed more bytes (not a failure)
    ├── ProtocolError         the peer broke MQTT 3.1.1: close that one connection
    │   ├── MalformedPacket   bytes that are not a valid packet (bad flags, lengths, strings, ...)
    │   ├── PacketTooLarge    a packet whose remaining length exceeds the configured limit
    │   └── UnsupportedFeature  valid MQTT this server does not speak (QoS 2)
    └── LocalProtocolError    our own code asked the engine for something illegal (a bug)

Messages name the packet and the field; they never include payloads or passwords.
"""

from __future__ import annotations

__all__ = [
    "LocalProtocolError",
    "MalformedPacket",
    "MqttError",
    "NeedMoreData",
    "PacketTooLarge",
    "ProtocolError",
    "UnsupportedFeature",
]


class MqttError(Exception):
    """Base of every error raised by `emulator.mqtt`."""


class NeedMoreData(MqttError):
    """The buffer holds only the beginning of a packet."""


class ProtocolError(MqttError):
    """The remote peer violated the protocol; the connection must be closed."""


class MalformedPacket(ProtocolError):
    """The bytes do not form a valid MQTT 3.1.1 packet."""


class PacketTooLarge(ProtocolError):
    """The packet announces a remaining length above the configured maximum."""


class UnsupportedFeature(ProtocolError):
    """Valid MQTT 3.1.1 outside the QoS 0/1 subset this server implements."""


class LocalProtocolError(MqttError):
    """The local side asked for a packet the current connection state does not allow."""
