"""The contracts between the MQTT shell, the DPS endpoint and the hub endpoints.

The asyncio shell (`server`) owns sockets and the MQTT engine. Once it has parsed a CONNECT it picks
an endpoint by the CONNECT username (DPS: `{idScope}/registrations/{id}/api-version=...`, no `?`;
hub: `{host}/{device}/?api-version=...`) and from then on speaks to it only through `MqttEndpoint`.
DPS assigns devices to hubs only through `HubDirectory`.

Rules both halves rely on:

- Endpoints never touch sockets or clocks: `now` (seconds since the epoch, float) is an argument.
- `Send` queues one PUBLISH to one live connection, at the QoS the endpoint chose (1 unless told;
  IoT Hub sends twin responses, desired patches and method requests at QoS 0, and C2D at the QoS
  its subscription was granted). For a QoS 1 PUBLISH, `on_acknowledged` is called once when the
  client's PUBACK arrives, and never if the connection ends first (a hub keeps a C2D message
  queued until then). A `Send` stays valid while its connection is up; after it ends the shell
  silently drops further sends, so an endpoint may keep a `Send` for asynchronous replies (DPS
  answers custom allocations from a task).
- `connect` learns the CONNECT's CleanSession flag and may answer a `ConnectAnswer` to say that a
  session was present (MQTT 3.1.1 §3.2.2.2); a bare int is a return code with no session.
- `Close` asks the shell to end one connection (a hub drops the older connection of a device id
  when a newer one connects). The shell does not call `disconnect` for a connection the endpoint
  closed itself.
- PUBACK, SUBACK, PINGRESP, keep-alive and packet limits are the shell's business, not the
  endpoint's; `subscribe` gets the QoS the shell grants (the requested one, at most 1) and only
  says whether the filter is granted.

This module holds Protocols and type aliases only; it imports nothing at run time beyond typing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from emulator.hub.twin import TwinDocument

__all__ = [
    "DPS",
    "Close",
    "ConnectAnswer",
    "HubDirectory",
    "MqttEndpoint",
    "Outbound",
    "Send",
    "connack_of",
    "connect_target",
]

DPS = "dps"


def connect_target(username: str) -> str | None:
    """Whom a CONNECT is for, by its username: `DPS`, a hub's host name, or None (refuse).

    The one place this is decided (docs/protocol/dps-mqtt.md §2, hub-mqtt.md §1): DPS usernames are
    `{idScope}/registrations/{registrationId}/api-version=...` with no `?`; hub usernames are
    `{host}/{deviceId}/?api-version=...`, the host their first segment.
    """
    if "/registrations/" in username and "?" not in username:
        return DPS
    host, _, rest = username.partition("/")
    return host.lower() if host and rest else None


class Outbound(NamedTuple):
    """A PUBLISH the shell sends to one client."""

    topic: str
    payload: bytes


class Send(Protocol):
    """Queue a PUBLISH `(topic, payload)` to the client of one connection (see the rules above)."""

    def __call__(
        self,
        topic: str,
        payload: bytes,
        /,
        *,
        qos: int = 1,
        on_acknowledged: Callable[[], None] | None = None,
    ) -> None: ...


Close = Callable[[], None]
"""End one connection (no DISCONNECT is sent to the client; the socket is closed)."""


# CONNACK return codes endpoints answer with (MQTT 3.1.1 §3.2.2.3).
CONNACK_ACCEPTED = 0
CONNACK_SERVER_UNAVAILABLE = 3
CONNACK_BAD_CREDENTIALS = 4
CONNACK_NOT_AUTHORIZED = 5


class ConnectAnswer(NamedTuple):
    """A CONNECT decision with the CONNACK's Session Present flag (only ever set when accepted)."""

    code: int
    session_present: bool = False


def connack_of(answer: int | ConnectAnswer) -> ConnectAnswer:
    """The answer of `MqttEndpoint.connect` in its full form."""
    return answer if isinstance(answer, ConnectAnswer) else ConnectAnswer(answer)


class MqttEndpoint(Protocol):
    """DPS, or one IoT hub, as the shell sees it once a CONNECT has been routed to it."""

    def connect(
        self,
        *,
        client_id: str,
        username: str,
        password: bytes | None,
        send: Send,
        close: Close,
        now: float,
        clean_session: bool = True,
    ) -> int | ConnectAnswer:
        """Authenticate a CONNECT; return the CONNACK code (0 accepts, 5 bad credentials)."""
        ...

    def publish(
        self, *, client_id: str, topic: str, payload: bytes, send: Send, now: float
    ) -> bool:
        """Handle a client PUBLISH; replies go through `send`, now or later. False refuses it:
        the shell then closes the connection without acknowledging the message."""
        ...

    def subscribe(self, *, client_id: str, topic_filter: str, qos: int = 1) -> bool:
        """Record a subscription granted at `qos`; False makes the shell answer SUBACK failure
        0x80 for it."""
        ...

    def unsubscribe(self, *, client_id: str, topic_filter: str) -> None:
        """Forget a subscription (the Node SDK unsubscribes before disconnecting)."""
        ...

    def disconnect(self, *, client_id: str) -> None:
        """The connection of `client_id` ended (DISCONNECT, error, keep-alive or socket close)."""
        ...


class HubDirectory(Protocol):
    """All emulated IoT hubs, as DPS sees them when it assigns devices."""

    def hub_names(self) -> Sequence[str]:
        """Host names of the hubs, as configured (`toasters.azure-devices.net`)."""
        ...

    def upsert_device(
        self,
        hub: str,
        device_id: str,
        *,
        primary_key: str,
        secondary_key: str,
        twin: TwinDocument | None,
    ) -> None:
        """Create or update an enabled SAS device; `twin=None` keeps an existing twin as it is.

        A new device with `twin=None` gets an empty twin. The keys are base64 symmetric keys
        (for group enrollments, the keys derived for the registration id).
        """
        ...

    def device_twin(self, hub: str, device_id: str) -> TwinDocument | None:
        """The device's twin, or None when the hub has no such device."""
        ...

    def delete_device(self, hub: str, device_id: str) -> None:
        """Remove a device (and drop its connection); a missing device is not an error."""
        ...
