"""Tests for emulator.faults.gate: the gate in front of an endpoint, and the delayed webhook."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from emulator.dps.webhook import FunctionWebhook, WebhookResponse
from emulator.endpoints import CONNACK_ACCEPTED, CONNACK_SERVER_UNAVAILABLE
from emulator.faults.gate import DelayedWebhook, FaultGate, drop_connections
from emulator.faults.spec import Faults, FaultSpec

NOW = 1_700_000_000.0
HUB = "toasters.azure-devices.net"


@dataclass
class RecordingEndpoint:
    """An MqttEndpoint that accepts everything and records what it was asked."""

    calls: list[tuple[str, str]] = field(default_factory=list)

    def connect(self, *, client_id: str, **_: object) -> int:
        self.calls.append(("connect", client_id))
        return CONNACK_ACCEPTED

    def publish(self, *, client_id: str, topic: str, **_: object) -> None:
        self.calls.append(("publish", topic))

    def subscribe(self, *, client_id: str, topic_filter: str) -> bool:
        self.calls.append(("subscribe", topic_filter))
        return True

    def unsubscribe(self, *, client_id: str, topic_filter: str) -> None:
        self.calls.append(("unsubscribe", topic_filter))

    def disconnect(self, *, client_id: str) -> None:
        self.calls.append(("disconnect", client_id))


def connect(gate: FaultGate, client_id: str, closed: list[str], now: float = NOW) -> int:
    return gate.connect(
        client_id=client_id,
        username="u",
        password=None,
        send=lambda topic, payload: None,
        close=lambda: closed.append(client_id),
        now=now,
    )


def test_gate_refuses_with_connack_3_without_asking_the_endpoint() -> None:
    """A refused CONNECT gets CONNACK 3 and never reaches the endpoint."""
    faults, endpoint = Faults((HUB,)), RecordingEndpoint()
    gate = FaultGate(HUB, endpoint, faults)
    faults.set(HUB, FaultSpec(refuse_connects=1), now=NOW)
    assert connect(gate, "dev-1", []) == CONNACK_SERVER_UNAVAILABLE
    assert endpoint.calls == []
    assert connect(gate, "dev-1", []) == CONNACK_ACCEPTED
    assert endpoint.calls == [("connect", "dev-1")]


def test_gate_throttles_dps_requests_with_429_and_retry_after() -> None:
    """A throttled DPS PUBLISH is answered 429 with retry-after and DPS's 429001 body."""
    faults, endpoint = Faults((HUB,)), RecordingEndpoint()
    gate = FaultGate("dps", endpoint, faults)
    faults.set("dps", FaultSpec(throttle_requests=1, retry_after=2), now=NOW)
    sent: list[tuple[str, bytes]] = []
    topic = "$dps/registrations/PUT/iotdps-register/?$rid=7"
    for _ in range(2):
        gate.publish(
            client_id="r",
            topic=topic,
            payload=b"{}",
            send=lambda t, p: sent.append((t, p)),
            now=NOW,
        )
    assert [t for t, _ in sent] == ["$dps/registrations/res/429/?$rid=7&retry-after=2"]
    assert json.loads(sent[0][1])["errorCode"] == 429001
    assert endpoint.calls == [("publish", topic)]


def test_hub_gate_never_throttles() -> None:
    """Throttling is a DPS fault: a hub gate passes publishes through."""
    faults, endpoint = Faults((HUB,)), RecordingEndpoint()
    gate = FaultGate(HUB, endpoint, faults)
    gate.publish(
        client_id="d", topic="devices/d/messages/events/", payload=b"", send=print, now=NOW
    )
    assert endpoint.calls == [("publish", "devices/d/messages/events/")]


def test_drop_closes_tracked_connections_and_tells_the_endpoint() -> None:
    """drop_connections closes each accepted connection and reports its disconnect once."""
    faults, endpoint = Faults((HUB,)), RecordingEndpoint()
    gate = FaultGate(HUB, endpoint, faults)
    closed: list[str] = []
    for client_id in ("a", "b", "c"):
        connect(gate, client_id, closed)
    gate.disconnect(client_id="c")
    assert drop_connections(faults, HUB, "a") == 1
    assert drop_connections(faults, HUB) == 1
    assert drop_connections(faults, HUB) == 0
    assert closed == ["a", "b"]
    disconnects = [client for call, client in endpoint.calls if call == "disconnect"]
    assert disconnects == ["c", "a", "b"]


def test_delayed_webhook_waits_the_dps_latency() -> None:
    """DelayedWebhook sleeps webhook_latency before each call, and not at all without it."""
    faults = Faults((HUB,))
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    inner = FunctionWebhook(lambda url, body: WebhookResponse(200, b"{}"))
    webhook = DelayedWebhook(inner, faults, sleep=sleep)
    asyncio.run(webhook.post("http://x/", b"{}"))
    faults.set("dps", FaultSpec(webhook_latency=2.5), now=NOW)
    answer = asyncio.run(webhook.post("http://x/", b"{}"))
    assert (answer.status, slept, len(inner.calls)) == (200, [2.5], 2)
