"""Tests for emulator.dps.wire: DPS's requests, replies and operation bodies over MQTT."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.dps.codes import DpsErrorCode
from emulator.dps.wire import (
    DpsRequestError,
    Operation,
    Register,
    RegistrationRecord,
    RegistrationStatus,
    StatusQuery,
    Substatus,
    error_body,
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


REGISTER = "$dps/registrations/PUT/iotdps-register/?$rid=1"


@pytest.mark.parametrize(
    ("topic", "payload", "code"),
    [
        ("$dps/registrations/PUT/iotdps-register/", b"{}", 400004),
        (REGISTER, b"{not json", 400012),
        (REGISTER, b"[1]", 400012),
        (REGISTER, b'{"registrationId": "dev-001", "modelId": "dtmi:x;1"}', 400012),
        (REGISTER, b'{"registrationId": "dev-001", "RegistrationId": "dev-001"}', 400012),
        (REGISTER, b'{"registrationId": null}', 400012),
        (REGISTER, b'{"registrationId": "x"}', 401002),
        ("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1", b" ", 400004),
        ("$dps/registrations/DELETE/x/?$rid=1", b"", 400004),
    ],
)
def test_bad_requests_get_dps_error_codes(topic: str, payload: bytes, code: int) -> None:
    """Malformed requests raise DpsRequestError with DPS's code and its reply status."""
    with pytest.raises(DpsRequestError) as caught:
        parse_request(topic, payload, registration_id="dev-001")
    assert (caught.value.code, caught.value.status) == (code, code // 1000)


def test_a_deserialization_error_starts_with_dps_words_and_names_the_member() -> None:
    """400012's message is DPS's "Deserialization error." followed by what was wrong."""
    with pytest.raises(DpsRequestError) as caught:
        parse_request(REGISTER, b'{"modelId": "dtmi:x;1"}', registration_id="dev-001")
    assert caught.value.message.startswith("Deserialization error. ")
    assert "'modelId'" in caught.value.message
    assert "payload" in caught.value.message


def test_register_members_match_without_regard_to_case() -> None:
    """`RegistrationId`, `PAYLOAD` and `tpm` are accepted as DPS's deserializer accepts them."""
    body = b'{"RegistrationId": "DEV-001", "PAYLOAD": [1], "tpm": null}'
    assert parse_request(REGISTER, body, registration_id="dev-001") == Register(
        rid="1", payload=[1]
    )


def refusal(topic: str, payload: bytes) -> DpsRequestError | None:
    """The DpsRequestError a publish gets, or None when it parses."""
    try:
        parse_request(topic, payload, registration_id="dev-001")
    except DpsRequestError as error:
        return error
    return None


@given(st.binary(max_size=300), st.text(max_size=80))
def test_any_publish_parses_or_raises_a_dps_request_error(payload: bytes, topic_tail: str) -> None:
    """Whatever a device publishes, parsing yields a request or one of DPS's request errors."""
    for topic in (REGISTER, "$dps/registrations/" + topic_tail):
        error = refusal(topic, payload)
        if error is not None:
            assert error.code in set(DpsErrorCode)
            assert error.status in (400, 401)


def test_error_body_is_dps_compact_error_shape() -> None:
    """An error body is {"errorCode","trackingId","message","timestampUtc"}, compact JSON."""
    body = error_body(DpsErrorCode.DESERIALIZATION_ERROR, "Deserialization error.", now=NOW)
    assert body.startswith(b'{"errorCode":400012,"trackingId":"",')
    assert set(json.loads(body)) == {"errorCode", "trackingId", "message", "timestampUtc"}


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


def test_assigning_bodies_match_dps_byte_for_byte() -> None:
    """The register's 202 is {operationId, status}; a poll's adds {registrationId, status}: the
    94 and 173 bytes of a real DPS trace (MicrosoftDocs includes/iot-central-connect-device-c.md)."""
    operation = Operation(
        operation_id="4.2f792ade0a5c3e68.baf0e879-d88a-4153-afef-71aff51fd847",
        registration_id="sample-device-01",
        status=RegistrationStatus.ASSIGNING,
        created="c",
        last_updated="c",
    )
    register, poll = operation_body(operation), operation_body(operation, polled=True)
    assert json.loads(register) == {"operationId": operation.operation_id, "status": "assigning"}
    assert json.loads(poll)["registrationState"] == {
        "registrationId": "sample-device-01",
        "status": "assigning",
    }
    assert (len(register), len(poll)) == (94, 173)
