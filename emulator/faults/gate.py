"""Where faults meet traffic: the endpoint gate in front of DPS and each hub, the delayed webhook.

`FaultGate` is the `ports.MqttEndpoint` the router hands out for DPS and for each hub (an
`gating.EndpointGate`); it asks `faults.Faults` (the pure decisions) whether to refuse a CONNECT
(CONNACK 3) or throttle a DPS request (429 + `retry-after`, the body of wire-traces D7), remembers
accepted connections so that `drop_connections` can close them, and passes everything else to the
real endpoint unchanged.
`DelayedWebhook` waits the DPS `webhook_latency` before each call through the `Webhook` seam.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from emulator.dps.webhook import Webhook, WebhookResponse
from emulator.dps.wire import error_body, reply_topic
from emulator.endpoints import Close, MqttEndpoint, Send
from emulator.faults.spec import DPS_TARGET, THROTTLED_ERROR_CODE, THROTTLED_MESSAGE, Faults
from emulator.gating import EndpointGate
from emulator.hub.messages import request_id

__all__ = ["DelayedWebhook", "FaultGate", "drop_connections"]


def drop_connections(faults: Faults, name: str, client_id: str | None = None) -> int:
    """Close the target's connections (or one client's) as a network failure would; the count."""
    taken = faults.take_connections(name, client_id)
    for taken_id, endpoint, close in taken:
        endpoint.disconnect(client_id=taken_id)  # the shell skips it for endpoint-side closes
        close()
    return len(taken)


class FaultGate(EndpointGate):
    """The `ports.MqttEndpoint` in front of DPS or one hub: refusals, throttling, tracking."""

    def __init__(self, target: str, endpoint: MqttEndpoint, faults: Faults) -> None:
        super().__init__(endpoint)
        self.target = target
        self._faults = faults
        self._is_dps = target == DPS_TARGET

    def refuses_connect(self, now: float) -> bool:
        """While the target refuses connections."""
        return self._faults.refuse_connect(self.target, now)

    def accepted(self, client_id: str, close: Close) -> None:
        """Tracked, so that `drop_connections` can close it."""
        self._faults.track(self.target, client_id, self.endpoint, close)

    def answers(self, *, topic: str, send: Send, now: float) -> bool:
        """A throttled DPS request gets 429 + retry-after."""
        if not self._is_dps:
            return False
        retry_after = self._faults.throttle(self.target, now)
        rid = request_id(topic)
        if retry_after is None or not rid:
            return False
        send(
            reply_topic(429, rid, retry_after=retry_after),
            error_body(THROTTLED_ERROR_CODE, THROTTLED_MESSAGE, now=now),
        )
        return True

    def ended(self, client_id: str) -> None:
        """No longer tracked."""
        self._faults.forget(self.target, client_id)


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
