"""What travels between a hub and its devices besides twins and C2D (`c2d`): telemetry, method
answers, and the property bag.

The property bag IoT Hub puts in MQTT topic names (`docs/protocol/hub-mqtt.md` §3): `&`-separated,
URL-encoded `name=value` pairs, `$.`-prefixed names for system properties (`$.mid` message id,
`$.to`, `$.ct` content type, `$.ce` content encoding), a name alone for a property without a value.
Pure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

__all__ = [
    "MethodResponse",
    "TelemetryMessage",
    "decode_bag",
    "encode_bag",
    "json_bytes",
    "request_id",
]


@dataclass(frozen=True, kw_only=True)
class TelemetryMessage:
    """One device-to-cloud message as the hub logged it."""

    device_id: str
    body: bytes
    system_properties: Mapping[str, str | None]
    properties: Mapping[str, str | None]
    enqueued_at: float


@dataclass(frozen=True)
class MethodResponse:
    """A device's answer to a direct method: status and parsed JSON payload (None if empty)."""

    status: int
    payload: Any


def request_id(topic: str) -> str:
    _, _, query = topic.partition("?")
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key == "$rid":
            return value
    return ""


def encode_bag(pairs: Sequence[tuple[str, str | None]]) -> str:
    return "&".join(
        quote(key, safe="") if value is None else f"{quote(key, safe='')}={quote(value, safe='')}"
        for key, value in pairs
    )


def decode_bag(bag: str) -> dict[str, str | None]:
    properties: dict[str, str | None] = {}
    for pair in filter(None, bag.split("&")):
        key, sep, value = pair.partition("=")
        properties[unquote(key)] = unquote(value) if sep else None
    return properties


def json_bytes(value: object) -> bytes:
    return json.dumps(value).encode("utf-8")
