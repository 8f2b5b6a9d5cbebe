"""Where faults meet traffic: the endpoint gate in front of DPS and each hub, the delayed webhook.

`FaultGate` is the `ports.MqttEndpoint` the router hands out for DPS and for each hub; it asks
`faults.Faults` (the pure decisions) whether to refuse a CONNECT (CONNACK 3) or throttle a DPS
request (429 + `retry-after`, the body of wire-traces D7), remembers accepted connections so that
`drop_connections` can close them, and passes everything else to the real endpoint unchanged.
`DelayedWebhook` waits the DPS `webhook_latency` before each call through the `Webhook` seam.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from emulator.dps.webhook import Webhook, WebhookResponse
from emulator.dps.wire import error_body, reply_topic
from emulator.endpoints import (
    CONNACK_ACCEPTED,
    CONNACK_SERVER_UNAVAILABLE,
    Close,
    ConnectAnswer,
    MqttEndpoint,
    Send,
    connack_of,
)
from emulator.faults.spec import DPS_TARGET, THROTTLED_ERROR_CODE, THROTTLED_MESSAGE, Faults
from emulator.hub.messages import request_id

__all__ = ["DelayedWebhook", "FaultGate", "drop_connections"]


def drop_connections(faults: Faults, name: str, client_id: str | None = None) -> int:
    """Close the target's connections (or one client's) as a network failure would; the count."""
    taken = faults.take_connections(name, client_id)
    for taken_id, endpoint, close in taken:
        endpoint.disconnect(client_id=taken_id)  # the shell skips it for endpoint-side closes
        close()
    return len(taken)


class FaultGate:
    """The `ports.MqttEndpoint` in front of DPS or one hub: refusals, throttling, tracking."""

    def __init__(self, target: str, endpoint: MqttEndpoint, faults: Faults) -> None:
        self.target = target
        self.endpoint = endpoint
        self._faults = faults
        self._is_dps = target == DPS_TARGET

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
        """CONNACK 3 while the target refuses connections, else the endpoint's answer."""
        if self._faults.refuse_connect(self.target, now):
            return CONNACK_SERVER_UNAVAILABLE
        answer = self.endpoint.connect(
            client_id=client_id,
            username=username,
            password=password,
            send=send,
            close=close,
            now=now,
            clean_session=clean_session,
        )
        if connack_of(answer).code == CONNACK_ACCEPTED:
            self._faults.track(self.target, client_id, self.endpoint, close)
        return answer

    def publish(
        self, *, client_id: str, topic: str, payload: bytes, send: Send, now: float
    ) -> bool:
        """A throttled DPS request gets 429 + retry-after; everything else goes through."""
        if self._is_dps:
            retry_after = self._faults.throttle(self.target, now)
            rid = request_id(topic)
            if retry_after is not None and rid:
                send(
                    reply_topic(429, rid, retry_after=retry_after),
                    error_body(THROTTLED_ERROR_CODE, THROTTLED_MESSAGE, now=now),
                )
                return True
        return self.endpoint.publish(
            client_id=client_id, topic=topic, payload=payload, send=send, now=now
        )

    def subscribe(self, *, client_id: str, topic_filter: str, qos: int = 1) -> bool:
        """Passed through."""
        return self.endpoint.subscribe(client_id=client_id, topic_filter=topic_filter, qos=qos)

    def unsubscribe(self, *, client_id: str, topic_filter: str) -> None:
        """Passed through."""
        self.endpoint.unsubscribe(client_id=client_id, topic_filter=topic_filter)

    def disconnect(self, *, client_id: str) -> None:
        """Passed through; the connection is no longer tracked."""
        self._faults.forget(self.target, client_id)
        self.endpoint.disconnect(client_id=client_id)


class DelayedWebhook:
    """A `webhook_client.Webhook` that waits the DPS `webhook_latency` before each call."""

    def __init__(
        self,
        inner: Webhook,
        faults: Faults,
        *,
        sleep: Callable[[float], Awaitable[object]],
    ) -> None:
        self._inner = inner
        self._faults = faults
        self._sleep = sleep

    async def post(self, url: str, body: bytes) -> WebhookResponse:
        """Wait the configured latency, then call the real webhook."""
        latency = self._faults.webhook_latency()
        if latency > 0:
            await self._sleep(latency)
        return await self._inner.post(url, body)

    async def aclose(self) -> None:
        """Release the real webhook's client."""
        await self._inner.aclose()
