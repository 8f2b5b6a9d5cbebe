"""Tests for emulator.quotas.gate: the quota gate in front of a real hub, and the lag monitor."""

from __future__ import annotations

import asyncio
import json
import time

from emulator.endpoints import CONNACK_ACCEPTED, CONNACK_SERVER_UNAVAILABLE, connack_of
from emulator.quotas.gate import HubQuotaGate, LoopLagMonitor
from emulator.quotas.limits import Kind, Quotas, QuotaSettings
from tests.emulator.hub.test_endpoint import E2, HUB, NOW, USERNAME, Client, new_hub


def gate(**settings: object) -> tuple[HubQuotaGate, Quotas]:
    quotas = Quotas(QuotaSettings(**settings), (HUB,), now=NOW)  # type: ignore[arg-type]
    return HubQuotaGate(HUB, new_hub(), quotas), quotas


def connect(hub_gate: HubQuotaGate, client: Client, *, now: float = NOW) -> int:
    answer = hub_gate.connect(
        client_id="dev-001",
        username=USERNAME,
        password=E2["token"].encode(),
        send=client.send,
        close=client.close,
        now=now,
    )
    return connack_of(answer).code


def test_connections_over_the_rate_get_connack_3_and_never_reach_the_hub() -> None:
    """1 new connection a second: the first is the hub's (accepted), the second CONNACK 3 with
    the hub untouched (the device stays offline), a second later accepted again."""
    hub_gate, quotas = gate(hub_connections_per_second=1)
    hub = hub_gate.endpoint
    assert connect(hub_gate, Client()) == CONNACK_ACCEPTED
    hub_gate.disconnect(client_id="dev-001")
    assert connect(hub_gate, Client(), now=NOW + 0.1) == CONNACK_SERVER_UNAVAILABLE
    assert not hub.is_connected("dev-001")  # type: ignore[attr-defined]
    assert connect(hub_gate, Client(), now=NOW + 1.2) == CONNACK_ACCEPTED
    assert quotas.refused[Kind.HUB_CONNECTIONS] == 1


def test_twin_requests_over_their_quota_get_a_429_twin_response() -> None:
    """One twin read a second: the first GET is the hub's 200, the second a 429 with IoT Hub's
    throttling error on the same rid; a reported PATCH has its own quota; telemetry is never
    throttled here."""
    hub_gate, _ = gate(hub_twin_reads_per_second=1, hub_twin_updates_per_second=1)
    client = Client()
    assert connect(hub_gate, client) == CONNACK_ACCEPTED
    assert hub_gate.subscribe(client_id="dev-001", topic_filter="$iothub/twin/res/#", qos=0)

    def publish(topic: str, payload: bytes = b" ") -> bool:
        return hub_gate.publish(
            client_id="dev-001", topic=topic, payload=payload, send=client.send, now=NOW
        )

    assert publish("$iothub/twin/GET/?$rid=1")
    assert publish("$iothub/twin/GET/?$rid=2")
    topics = [sent.topic for sent in client.sent]
    assert topics[-2:] == ["$iothub/twin/res/200/?$rid=1", "$iothub/twin/res/429/?$rid=2"]
    assert client.json()["errorCode"] == 429001
    patch = "$iothub/twin/PATCH/properties/reported/?$rid={}"
    assert publish(patch.format(3), b'{"a": 1}')
    assert publish(patch.format(4), b'{"a": 2}')
    assert client.sent[-2].topic.startswith("$iothub/twin/res/204/?$rid=3")
    assert client.sent[-1].topic == "$iothub/twin/res/429/?$rid=4"
    for number in range(5):
        assert publish("devices/dev-001/messages/events/", json.dumps(number).encode())
    assert len(hub_gate.endpoint.messages) == 5  # type: ignore[attr-defined]


def test_the_lag_monitor_reports_a_blocked_loop_as_overload() -> None:
    """A loop blocked for 0.3 s with a 0.1 s threshold: the monitor marks it overloaded."""
    quotas = Quotas(QuotaSettings(overload_lag_seconds=0.1), (HUB,), now=time.time())

    async def scenario() -> tuple[bool, float]:
        monitor = LoopLagMonitor(quotas, interval=0.02)
        monitor.start()
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # the loop is blocked: the monitor wakes late
        await asyncio.sleep(0.05)
        await monitor.close()
        return quotas.overloaded(time.time()), monitor.worst

    overloaded, worst = asyncio.run(scenario())
    assert overloaded
    assert worst >= 0.2
