"""Where quotas meet traffic: the gate in front of each hub, and the event loop lag monitor.

`HubQuotaGate` is the `endpoints.MqttEndpoint` (a `gating.EndpointGate`) between a hub's fault
gate and the hub: a CONNECT the hub cannot take now gets CONNACK 3 ("server unavailable"; the
Python SDK raises `ConnectionFailedError`, and its automatic reconnection treats it as transient,
hub-mqtt.md §6), and a twin GET or reported-properties PATCH over its quota gets a `429` twin response with
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

from emulator.endpoints import MqttEndpoint, Send
from emulator.faults.spec import THROTTLED_ERROR_CODE, THROTTLED_MESSAGE
from emulator.gating import EndpointGate
from emulator.hub.messages import request_id
from emulator.quotas.limits import Quotas

__all__ = ["HubQuotaGate", "LoopLagMonitor"]

_TWIN_GET = "$iothub/twin/GET/"
_TWIN_PATCH = "$iothub/twin/PATCH/properties/reported/"


class HubQuotaGate(EndpointGate):
    """The `endpoints.MqttEndpoint` in front of one hub: its connection and twin quotas."""

    def __init__(self, hub: str, endpoint: MqttEndpoint, quotas: Quotas) -> None:
        super().__init__(endpoint)
        self.hub = hub
        self._quotas = quotas

    def refuses_connect(self, now: float) -> bool:
        """Over the new-connection quota, or while overloaded."""
        return self._quotas.hub_connect(self.hub, now)

    def answers(self, *, topic: str, send: Send, now: float) -> bool:
        """A twin request over its quota gets 429."""
        refused = (topic.startswith(_TWIN_GET) and self._quotas.twin_read(self.hub, now)) or (
            topic.startswith(_TWIN_PATCH) and self._quotas.twin_update(self.hub, now)
        )
        if refused:
            send(f"$iothub/twin/res/429/?$rid={request_id(topic)}", _THROTTLED_BODY, qos=0)
        return refused


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
