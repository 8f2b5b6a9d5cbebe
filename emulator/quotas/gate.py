"""Where quotas meet traffic: the gate in front of each hub, and the event loop lag monitor.

`HubQuotaGate` is the `endpoints.MqttEndpoint` between a hub's fault gate and the hub: a CONNECT
the hub cannot take now gets CONNACK 3 ("server unavailable"; the Python SDK raises
`ConnectionFailedError`, and its automatic reconnection treats it as transient, hub-mqtt.md §6),
and a twin GET or reported-properties PATCH over its quota gets a `429` twin response with
IoT Hub's throttling error (limits.md §9). Everything else passes through unchanged. DPS needs no
gate: `DpsService` asks `Quotas` itself, for MQTT and HTTPS alike.

`LoopLagMonitor` wakes every `interval` seconds and tells `Quotas` how late it woke: the measure
of an event loop that cannot keep up, which `Quotas` turns into refusals of new work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable

from emulator.endpoints import (
    CONNACK_SERVER_UNAVAILABLE,
    Close,
    ConnectAnswer,
    MqttEndpoint,
    Send,
)
from emulator.faults.spec import THROTTLED_ERROR_CODE, THROTTLED_MESSAGE
from emulator.hub.messages import request_id
from emulator.quotas.limits import Quotas

__all__ = ["HubQuotaGate", "LoopLagMonitor"]

_TWIN_GET = "$iothub/twin/GET/"
_TWIN_PATCH = "$iothub/twin/PATCH/properties/reported/"


class HubQuotaGate:
    """The `endpoints.MqttEndpoint` in front of one hub: its connection and twin quotas."""

    def __init__(self, hub: str, endpoint: MqttEndpoint, quotas: Quotas) -> None:
        self.hub = hub
        self.endpoint = endpoint
        self._quotas = quotas

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
        """CONNACK 3 over the new-connection quota (or while overloaded), else the hub's answer."""
        if self._quotas.hub_connect(self.hub, now):
            return CONNACK_SERVER_UNAVAILABLE
        return self.endpoint.connect(
            client_id=client_id,
            username=username,
            password=password,
            send=send,
            close=close,
            now=now,
            clean_session=clean_session,
        )

    def publish(
        self, *, client_id: str, topic: str, payload: bytes, send: Send, now: float
    ) -> bool:
        """A twin request over its quota gets 429; everything else goes to the hub."""
        refused = (topic.startswith(_TWIN_GET) and self._quotas.twin_read(self.hub, now)) or (
            topic.startswith(_TWIN_PATCH) and self._quotas.twin_update(self.hub, now)
        )
        if refused:
            send(f"$iothub/twin/res/429/?$rid={request_id(topic)}", _THROTTLED_BODY, qos=0)
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
        """Passed through."""
        self.endpoint.disconnect(client_id=client_id)


_THROTTLED_BODY = json.dumps(
    {"errorCode": THROTTLED_ERROR_CODE, "message": THROTTLED_MESSAGE}, separators=(",", ":")
).encode("utf-8")


class LoopLagMonitor:
    """A task that measures how late the event loop runs and tells `Quotas`."""

    def __init__(
        self,
        quotas: Quotas,
        *,
        interval: float = 0.25,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._quotas = quotas
        self._interval = interval
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.worst = 0.0  # the largest lag seen, for status

    def start(self) -> None:
        """Start measuring on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def close(self) -> None:
        """Stop measuring."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self._interval
            await asyncio.sleep(self._interval)
            lag = max(0.0, loop.time() - expected)
            self.worst = max(self.worst, lag)
            self._quotas.note_lag(lag, self._clock())
