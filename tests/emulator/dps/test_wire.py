"""Tests for emulator.dps.wire: DPS's requests, replies and operation bodies over MQTT."""

from __future__ import annotations

import json
import re

import pytest

from emulator.dps.wire import (
    DpsRequestError,
    Operation,
    Register,
    RegistrationRecord,
    RegistrationStatus,
    StatusQuery,
    Substatus,
    format_dps_timestamp,
    new_operation_id,
    operation_body,
    parse_request,
    reply_topic,
    subscription_allowed,
)
from tests.emulator.dps.registrants import HUBS, NOW


def test_only_the_response_filter_is_granted() -> None:
    """DPS grants $dps/registrations/res/# and refuses other filters."""
    assert subscription_allowed("$dps/registrations/res/#")
    assert not subscription_allowed("#")


def test_register_request_is_parsed_with_its_payload() -> None:
    """A register PUBLISH yields its raw rid and the device payload."""
    body = b'{"payload": {"fw": "1.2.3"}, "registrationId": "dev-001"}'
    request = parse_request(
        "$dps/registrations/PUT/iotdps-register/?$rid=a%2Fb", body, registration_id="dev-001"
    )
    assert request == Register(rid="a%2Fb", payload={"fw": "1.2.3"})


def test_poll_request_is_parsed() -> None:
    """A status PUBLISH yields the rid and the URL-decoded operation id."""
    topic = "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=r2&operationId=5.ab.c%2Fd"
    request = parse_request(topic, b" ", registration_id="dev-001")
    assert request == StatusQuery(rid="r2", operation_id="5.ab.c/d")


@pytest.mark.parametrize(
    ("topic", "payload", "status"),
    [
        ("$dps/registrations/PUT/iotdps-register/", b"{}", 400),
        ("$dps/registrations/PUT/iotdps-register/?$rid=1", b"{not json", 400),
        ("$dps/registrations/PUT/iotdps-register/?$rid=1", b"[1]", 400),
        ("$dps/registrations/PUT/iotdps-register/?$rid=1", b'{"registrationId": "x"}', 400),
        ("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1", b" ", 400),
        ("$dps/registrations/DELETE/x/?$rid=1", b"", 404),
    ],
)
def test_bad_requests_get_error_statuses(topic: str, payload: bytes, status: int) -> None:
    """Malformed requests raise DpsRequestError with the status for the response topic."""
    with pytest.raises(DpsRequestError) as caught:
        parse_request(topic, payload, registration_id="dev-001")
    assert caught.value.status == status


def test_reply_topic_uses_lowercase_retry_after() -> None:
    """Replies echo the rid and carry lowercase retry-after."""
    assert reply_topic(202, "r1", retry_after=1) == (
        "$dps/registrations/res/202/?$rid=r1&retry-after=1"
    )
    assert reply_topic(200, "r2") == "$dps/registrations/res/200/?$rid=r2"


def test_operation_id_and_timestamps_have_dps_shapes() -> None:
    """Operation ids look like 5.ae17b01c7d4d7ebf.<guid>; timestamps have 7 fractional digits."""
    operation_id = new_operation_id(bytes(range(24)))
    assert re.fullmatch(r"\d\.[0-9a-f]{16}\.[0-9a-f-]{36}", operation_id)
    assert format_dps_timestamp(NOW + 0.5) == "2023-11-14T22:13:20.5000000Z"


def test_assigned_body_fills_every_field_the_sdk_reads() -> None:
    """An assigned operation carries deviceId, assignedHub, substatus, times, etag and payload."""
    record = RegistrationRecord(
        registration_id="dev-001",
        device_id="dev-001",
        assigned_hub=HUBS[0],
        substatus=Substatus.INITIAL_ASSIGNMENT,
        created="c",
        last_updated="u",
        generation=1,
    )
    operation = Operation(
        operation_id="op",
        registration_id="dev-001",
        status=RegistrationStatus.ASSIGNED,
        created="c",
        last_updated="u",
        record=record,
        payload={"hello": "world"},
    )
    body = json.loads(operation_body(operation))
    state = body["registrationState"]
    assert (body["operationId"], body["status"]) == ("op", "assigned")
    assert (state["deviceId"], state["assignedHub"], state["substatus"]) == (
        "dev-001",
        HUBS[0],
        "initialAssignment",
    )
    assert state["payload"] == {"hello": "world"}
    assert {"createdDateTimeUtc", "lastUpdatedDateTimeUtc", "etag", "registrationId"} <= set(state)


def test_failed_body_carries_error_code_and_message() -> None:
    """A failed operation carries errorCode and errorMessage, and no hub."""
    operation = Operation(
        operation_id="op",
        registration_id="dev-001",
        status=RegistrationStatus.FAILED,
        created="c",
        last_updated="u",
        error_code=400207,
        error_message="Custom allocation failed with status code: 400",
    )
    body = json.loads(operation_body(operation))
    assert body["status"] == "failed"
    assert body["registrationState"]["errorCode"] == 400207
    assert "assignedHub" not in body["registrationState"]


def test_assigning_body_is_minimal() -> None:
    """While assigning the body is just operationId and status."""
    operation = Operation(
        operation_id="op",
        registration_id="r",
        status=RegistrationStatus.ASSIGNING,
        created="c",
        last_updated="c",
    )
    assert json.loads(operation_body(operation)) == {"operationId": "op", "status": "assigning"}
