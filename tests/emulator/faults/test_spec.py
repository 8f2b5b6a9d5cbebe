"""Tests for emulator.faults.spec: fault specs and their state over time (pure decisions)."""

from __future__ import annotations

import pytest

from emulator.faults.spec import FaultError, Faults, FaultSpec, parse_fault_spec, parse_fault_table

NOW = 1_700_000_000.0
HUB = "toasters.azure-devices.net"


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
