"""Cloud-to-device messages: one message as a value, and one device's queue. Pure: `now` is passed.

IoT Hub keeps C2D messages in a per-device queue, shared by every transport and independent of any
MQTT session (docs/protocol/hub-mqtt.md §4, §12):

- at most `QUEUE_LIMIT` (50) messages; sending one more is refused with 403004
  DeviceMaximumQueueDepthExceeded; nothing is dropped to make room;
- every message expires: at the expiry time the sender set, else `DEFAULT_TTL` (one hour, IoT
  Hub's default `defaultTtlAsIso8601`) after it was enqueued; an expired message leaves the queue
  unsent (IoT Hub dead-letters it);
- a message sent at QoS 1 stays in the queue, marked as sent on that connection, until the device
  PUBACKs it (`complete`); when that connection ends first, the next connection gets it again; a
  message sent at QoS 0 is completed as it is sent (nothing can acknowledge it);
- messages go out in the order they were enqueued.

The topic is the one IoT Hub publishes on: `devices/{id}/messages/devicebound/{bag}` with `$.mid`,
`$.to`, `$.exp` (only when the sender set an expiry), `$.cid`, `$.ct`, `$.ce`, `iothub-ack`, then
the application properties (`messages.encode_bag` encodes them).

Over HTTPS a receive locks the oldest message not sent anywhere (`lock`); complete or reject
takes it out, abandon or the lock's end puts it back (`release`), as https.hub_api does.

Not emulated: feedback messages (`iothub-ack` other than `none` is carried to the device, but IoT
Hub's feedback queue is an AMQP endpoint the emulator does not serve), abandon and reject over
MQTT (MQTT devices cannot do either), the one-minute lock timeout on MQTT (a message
unacknowledged on a live connection is not sent again on that connection).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from emulator.hub.messages import encode_bag
from emulator.hub.registry import HubError
from emulator.hub.twin import format_timestamp

__all__ = [
    "DEFAULT_TTL",
    "MAX_TTL",
    "QUEUE_LIMIT",
    "AckMode",
    "C2dQueue",
    "CloudMessage",
    "DeviceMaximumQueueDepthExceeded",
]

QUEUE_LIMIT = 50
DEFAULT_TTL = 3600.0  # seconds; IoT Hub's default defaultTtlAsIso8601, PT1H
MAX_TTL = 2 * 24 * 3600.0  # IoT Hub's longest C2D time to live, two days


class DeviceMaximumQueueDepthExceeded(HubError):
    """The device's queue already holds `QUEUE_LIMIT` messages (403004)."""

    status = 403


class AckMode(StrEnum):
    """The `iothub-ack` feedback a sender asks for (DOC c2d, "Message feedback")."""

    NONE = "none"
    POSITIVE = "positive"
    NEGATIVE = "negative"
    FULL = "full"


@dataclass(frozen=True, kw_only=True)
class CloudMessage:
    """One cloud-to-device message as the hub queued it."""

    message_id: str
    body: bytes = field(repr=False)
    expiry: float  # seconds since the epoch
    expiry_set: bool = False  # the sender chose the expiry (then the topic carries `$.exp`)
    properties: Mapping[str, str | None] = field(default_factory=dict)
    correlation_id: str | None = None
    content_type: str | None = None
    content_encoding: str | None = None
    ack: AckMode = AckMode.NONE

    def topic(self, device_id: str) -> str:
        """The topic IoT Hub publishes this message on to `device_id`."""
        system: list[tuple[str, str | None]] = [
            ("$.mid", self.message_id),
            ("$.to", f"/devices/{device_id}/messages/deviceBound"),
        ]
        if self.expiry_set:
            system.append(("$.exp", format_timestamp(self.expiry)))
        for name, value in (
            ("$.cid", self.correlation_id),
            ("$.ct", self.content_type),
            ("$.ce", self.content_encoding),
        ):
            if value is not None:
                system.append((name, value))
        system.append(("iothub-ack", self.ack.value))
        return f"devices/{device_id}/messages/devicebound/{encode_bag([*system, *self.properties.items()])}"


@dataclass(eq=False)
class _Entry:
    """A queued message and the connection it was last sent on (None: not sent yet)."""

    message: CloudMessage
    sent_on: object | None = None
    locked_by: object | None = None  # an HTTPS receive's lock: no MQTT connection gets it


class C2dQueue:
    """One device's C2D messages, oldest first."""

    def __init__(self) -> None:
        self._entries: list[_Entry] = []

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[CloudMessage]:
        return (entry.message for entry in self._entries)

    def count(self, now: float) -> int:
        """Messages not yet expired at `now` (`cloudToDeviceMessageCount`)."""
        return sum(1 for entry in self._entries if entry.message.expiry > now)

    def add(self, message: CloudMessage, now: float) -> None:
        """Enqueue; DeviceMaximumQueueDepthExceeded when `QUEUE_LIMIT` unexpired messages wait."""
        self.expire(now)
        if len(self._entries) >= QUEUE_LIMIT:
            raise DeviceMaximumQueueDepthExceeded(
                f"the device's queue already holds {QUEUE_LIMIT} cloud-to-device messages"
            )
        self._entries.append(_Entry(message))

    def expire(self, now: float) -> list[CloudMessage]:
        """Take out the messages expired at `now`; they are returned."""
        expired = [entry.message for entry in self._entries if entry.message.expiry <= now]
        if expired:
            self._entries = [entry for entry in self._entries if entry.message.expiry > now]
        return expired

    def take_unsent(self, connection: object, now: float) -> list[tuple[CloudMessage, object]]:
        """Messages not yet sent on `connection`, oldest first, now marked as sent on it; each
        with the token `complete` takes."""
        self.expire(now)
        due: list[tuple[CloudMessage, object]] = []
        for entry in self._entries:
            if entry.sent_on is not connection and entry.locked_by is None:
                entry.sent_on = connection
                due.append((entry.message, entry))
        return due

    def lock(
        self, holder: object, now: float, *, live: object | None = None
    ) -> tuple[CloudMessage, object] | None:
        """The oldest message neither locked nor waiting for the PUBACK of the `live` MQTT
        connection, now held by `holder` (an HTTPS receive's lock) until `complete` or
        `release`; None when there is none."""
        self.expire(now)
        for entry in self._entries:
            if entry.locked_by is None and (entry.sent_on is None or entry.sent_on is not live):
                entry.locked_by, entry.sent_on = holder, None
                return entry.message, entry
        return None

    def release(self, token: object) -> bool:
        """The message `token` stands for goes back to waiting (abandoned, or its lock ran out);
        False if it already left the queue."""
        for entry in self._entries:
            if entry is token:
                entry.locked_by = None
                return True
        return False

    def complete(self, token: object) -> bool:
        """The device has the message `token` stands for: it leaves the queue (False if it
        already had, e.g. expired)."""
        for index, entry in enumerate(self._entries):
            if entry is token:
                del self._entries[index]
                return True
        return False
