"""Records: dict round trips, validation naming the field, payload summaries without values."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given

from store.records import (
    DeviceRecord,
    Outcome,
    RecordError,
    RegistrationRecord,
    device_from_dict,
    device_to_dict,
    registration_from_dict,
    registration_to_dict,
    summarize_payload,
)
from tests.store.strategies import registration_records

T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@given(registration_records())
def test_registration_round_trips_through_json(rec: RegistrationRecord) -> None:
    """to_dict → JSON → from_dict gives the same record."""
    assert registration_from_dict(json.loads(json.dumps(registration_to_dict(rec)))) == rec


def test_device_round_trips() -> None:
    """An inventory row survives its dict form."""
    dev = DeviceRecord(
        registration_id="d", hub="h", first_provisioned=T0, retired_at=T0, counted=("ab", "cd")
    )
    assert device_from_dict(json.loads(json.dumps(device_to_dict(dev)))) == dev


def test_naive_time_is_rejected() -> None:
    """A naive or non-UTC time is refused, naming the field."""
    with pytest.raises(RecordError, match="time: expected a timezone-aware"):
        RegistrationRecord(
            time=datetime(2025, 1, 1),
            registration_id="d",
            outcome=Outcome.ASSIGNED,
        )
    with pytest.raises(RecordError, match="time: expected a UTC datetime"):
        RegistrationRecord(
            time=datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=1))),
            registration_id="d",
            outcome=Outcome.ASSIGNED,
        )


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"time": None}, "time: required"),
        ({"time": "yesterday"}, "time: expected an ISO-8601 time"),
        ({"time": "2025-01-01T00:00:00"}, "time: expected a UTC offset"),
        ({"outcome": "maybe"}, "outcome: expected one of assigned | denied"),
        ({"registration_id": 7}, "registration_id: expected a string"),
        ({"payload_size": "big"}, "payload_size: expected an integer"),
        ({"payload_size": -1}, "payload_size: expected >= 0"),
        ({"decision_ms": True}, "decision_ms: expected a number"),
        ({"reprovision": "yes"}, "reprovision: expected true or false"),
        ({"payload_keys": [1]}, "payload_keys: expected a list of strings"),
        ({"payload_keys": "not json"}, "payload_keys: expected a JSON list"),
    ],
)
def test_bad_fields_are_named(patch: dict[str, object], message: str) -> None:
    """from_dict names the bad field and what it expected."""
    data = registration_to_dict(
        RegistrationRecord(time=T0, registration_id="d", outcome=Outcome.DENIED)
    )
    data.update(patch)
    with pytest.raises(RecordError, match=message):
        registration_from_dict(data)


def test_payload_summary_keeps_keys_not_values() -> None:
    """The summary has the byte size and the sorted top-level keys, never a value."""
    payload = {"modelId": "dtmi:x;1", "secret": "hunter2", "nested": {"k": 1}}
    size, names = summarize_payload(payload)
    assert size == len(json.dumps(payload, separators=(",", ":")).encode())
    assert names == ("modelId", "nested", "secret")
    assert "hunter2" not in repr(summarize_payload(payload))


def test_payload_summary_of_non_objects() -> None:
    """None has size 0; a list or string has a size and no keys; many keys are capped."""
    assert summarize_payload(None) == (0, ())
    assert summarize_payload([1, 2]) == (5, ())
    size, names = summarize_payload({f"k{i:03d}": i for i in range(100)})
    assert len(names) == 32
    assert size > 0
