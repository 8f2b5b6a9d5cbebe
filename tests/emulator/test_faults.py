"""Tests for emulator.faults.spec (pure decisions) and emulator.faults.gate (gate and delayed webhook)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import pytest

from emulator.dps.webhook import FunctionWebhook, WebhookResponse
from emulator.endpoints import CONNACK_ACCEPTED, CONNACK_SERVER_UNAVAILABLE
from emulator.faults.gate import DelayedWebhook, FaultGate, drop_connections
from emulator.faults.spec import FaultError, Faults, FaultSpec, parse_fault_spec, parse_fault_table

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


def test_spec_fields_are_validated_by_name() -> None:
    """Unknown fields, dps-only fields on a hub, negatives and fractions are refused, named."""
    cases = [
        ({"nope": 1}, "dps", "unknown field 'nope'"),
        ({"throttle_seconds": 5}, HUB, "throttle_seconds: applies to dps only"),
        ({"refuse_seconds": -1}, HUB, "refuse_seconds: expected a number >= 0"),
        ({"refuse_connects": 1.5}, HUB, "refuse_connects: expected a whole number"),
        ({"retry_after": 0}, "dps", "retry_after: expected 1 to 3600"),
        ({"drop_every": True}, HUB, "drop_every: expected a number"),
        ([], HUB, "expected a table of fault settings"),
    ]
    for value, target, message in cases:
        with pytest.raises(FaultError, match=message):
            parse_fault_spec(value, target=target, where="body")


def test_fault_table_maps_targets_case_insensitively() -> None:
    """`[faults]` keys are dps or hub names in any case; the spec keeps numbers as given."""
    specs = parse_fault_table(
        {"DPS": {"throttle_requests": 2}, HUB.upper(): {"refuse_seconds": 1.5}},
        hubs=(HUB,),
        source="e.toml",
    )
    assert specs == {
        "dps": FaultSpec(throttle_requests=2),
        HUB: FaultSpec(refuse_seconds=1.5),
    }
    with pytest.raises(FaultError, match=r"\[faults.other\]: expected dps or one of"):
        parse_fault_table({"other": {}}, hubs=(HUB,), source="e.toml")


def test_refusal_by_time_and_by_count() -> None:
    """refuse_seconds refuses until its deadline; refuse_connects refuses exactly N CONNECTs."""
    faults = Faults((HUB,))
    faults.set(HUB, FaultSpec(refuse_seconds=2), now=NOW)
    assert [faults.refuse_connect(HUB, NOW + t) for t in (0, 1.9, 2.0)] == [True, True, False]
    faults.set(HUB, FaultSpec(refuse_connects=2), now=NOW)
    assert [faults.refuse_connect(HUB, NOW) for _ in range(3)] == [True, True, False]
    assert not faults.refuse_connect("dps", NOW)


def test_throttle_answers_retry_after_then_serves() -> None:
    """throttle_requests gives N retry-after answers, throttle_seconds until its deadline."""
    faults = Faults((HUB,))
    faults.set("dps", FaultSpec(throttle_requests=1, retry_after=3), now=NOW)
    assert [faults.throttle("dps", NOW) for _ in range(2)] == [3, None]
    faults.set("dps", FaultSpec(throttle_seconds=5), now=NOW)
    assert (faults.throttle("dps", NOW + 4.9), faults.throttle("dps", NOW + 5)) == (1, None)
    faults.clear("dps")
    assert faults.throttle("dps", NOW) is None


def test_due_drops_come_round_every_period() -> None:
    """A drop_every target is due once per period, measured from when it was due."""
    faults = Faults((HUB,))
    faults.set(HUB, FaultSpec(drop_every=10), now=NOW)
    assert faults.due_drops(NOW + 9) == []
    assert faults.due_drops(NOW + 10) == [HUB]
    assert faults.due_drops(NOW + 15) == []
    assert faults.due_drops(NOW + 20) == [HUB]


def test_unknown_target_is_named() -> None:
    """A target that is neither dps nor a configured hub is refused with its name."""
    with pytest.raises(FaultError, match=r"'other\.example': expected dps or a configured hub"):
        Faults((HUB,)).set("other.example", FaultSpec(), now=NOW)


def test_describe_reports_what_is_left() -> None:
    """describe() shows the spec, the counters and seconds left, and tracked connections."""
    faults = Faults((HUB,))
    faults.set(HUB, FaultSpec(refuse_seconds=10, refuse_connects=1), now=NOW)
    state = faults.describe(NOW + 4)[HUB]
    assert state["refuse_seconds_left"] == 6
    assert state["refuse_connects_left"] == 1
    assert state["spec"]["refuse_seconds"] == 10
    assert faults.describe(NOW).keys() == {HUB}


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
