"""Parsing the AllocationRequest: tolerant in, strict about types, field named on error."""

from __future__ import annotations

import json

import pytest
from hypothesis import given

from allocation.errors import RequestError
from allocation.request import EnrollmentKind, parse_request, parse_request_body
from tests.fixtures import FIXTURES as ALL_FIXTURES
from tests.strategies import allocation_requests

FIXTURES = ALL_FIXTURES / "webhook"


def fixture(name: str) -> dict[str, object]:
    return json.loads((FIXTURES / name).read_text())


def test_initial_group_request_parses() -> None:
    """The documented initial request is a group registration with no current hub."""
    request = parse_request(fixture("initial-group-request.json"))
    assert request.registration_id == "breakroom499-contoso-tstrsd-007"
    assert request.enrollment_kind is EnrollmentKind.GROUP
    assert request.enrollment_group_id == "contoso-custom-allocated-devices"
    assert request.linked_hubs == (
        "custom-allocation-toasters-hub.azure-devices.net",
        "custom-allocation-heatpumps-hub.azure-devices.net",
    )
    assert not request.is_reprovisioning
    assert request.payload is None
    assert request.reprovision_policy is not None
    assert request.reprovision_policy.migrate_device_data


def test_reprovision_request_parses() -> None:
    """The tutorial's re-registration carries the current hub, device id and payload."""
    request = parse_request(fixture("reprovision-with-payload-request.json"))
    assert request.is_reprovisioning
    assert request.current_hub == "contoso-toasters-hub-1098.azure-devices.net"
    assert request.current_device_id == "breakroom499-contoso-tstrsd-007"
    assert request.payload == {
        "MyDeviceFirmwareVersion": "12.0.2.5",
        "MyDeviceProvisioningVersion": "1.0.0.0",
    }


def test_pnp_request_without_optional_fields_parses() -> None:
    """The PnP request has no reprovisionPolicy, iotHubs or capabilities, and mixed-case ids."""
    request = parse_request(fixture("pnp-request.json"))
    assert request.registration_id == "SAS-IoT-Devices"
    assert request.current_hub == "IoTPnPWS-Hub-20210726.azure-devices.net"
    assert request.reprovision_policy is None
    assert request.linked_hubs == ("IoTPnPWS-Hub-20210726.azure-devices.net",)


def test_individual_enrollment_is_recognised() -> None:
    """An individualEnrollment record makes an individual registration with no group id."""
    request = parse_request(
        {
            "individualEnrollment": {"registrationId": "dev-42"},
            "deviceRuntimeContext": {"registrationId": "dev-42"},
            "linkedHubs": ["a.azure-devices.net"],
        }
    )
    assert request.enrollment_kind is EnrollmentKind.INDIVIDUAL
    assert request.enrollment_group_id is None


def test_individual_enrollment_id_and_device_id_win() -> None:
    """The enrollment's registrationId is the device's identity and its deviceId the hub device id;
    what the device sent is kept when it differs."""
    request = parse_request(
        {
            "individualEnrollment": {"registrationId": "Dev-42", "deviceId": "hub-dev-42"},
            "deviceRuntimeContext": {"registrationId": "DEV-42"},
            "linkedHubs": ["a.azure-devices.net"],
        }
    )
    assert (request.registration_id, request.sent_registration_id) == ("Dev-42", "DEV-42")
    assert request.device_id == "hub-dev-42"


@pytest.mark.parametrize(
    ("context", "enrollment", "field"),
    [
        ({"registrationId": "a\u200bb"}, None, "deviceRuntimeContext.registrationId"),
        ({"registrationId": "a" * 129}, None, "deviceRuntimeContext.registrationId"),
        ({"registrationId": "a\nREPLAY"}, None, "deviceRuntimeContext.registrationId"),
        (
            {"registrationId": "ok"},
            {"registrationId": "b\u2028"},
            "individualEnrollment.registrationId",
        ),
        ({"registrationId": "ok"}, {"registrationId": 5}, "individualEnrollment.registrationId"),
        ({"registrationId": "ok"}, {"deviceId": 5}, "individualEnrollment.deviceId"),
    ],
)
def test_ids_that_cannot_identify_a_device_are_refused(
    context: dict[str, object], enrollment: dict[str, object] | None, field: str
) -> None:
    """Invisible, control or over-long ids are a 400 naming the field, never a key."""
    document: dict[str, object] = {"deviceRuntimeContext": context, "linkedHubs": ["h"]}
    if enrollment is not None:
        document["individualEnrollment"] = enrollment
    with pytest.raises(RequestError) as raised:
        parse_request(document)
    assert raised.value.field == field


@pytest.mark.parametrize("spelling", ["currentIoTHubHostName", "currentIoTHubHostname"])
def test_documented_spelling_variants_of_current_hub(spelling: str) -> None:
    """The spellings from the docs' tables and prose are accepted as the current hub."""
    request = parse_request(
        {
            "deviceRuntimeContext": {"registrationId": "d", spelling: "h.azure-devices.net"},
            "linkedHubs": ["h.azure-devices.net"],
        }
    )
    assert request.current_hub == "h.azure-devices.net"


def test_unknown_fields_are_ignored() -> None:
    """Fields DPS may add later do not break parsing."""
    document = fixture("initial-group-request.json")
    document["somethingNew"] = {"x": 1}
    assert parse_request(document).registration_id == "breakroom499-contoso-tstrsd-007"


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ([], "body"),
        ({"linkedHubs": ["h"]}, "deviceRuntimeContext"),
        ({"deviceRuntimeContext": {}, "linkedHubs": ["h"]}, "deviceRuntimeContext.registrationId"),
        (
            {"deviceRuntimeContext": {"registrationId": 7}, "linkedHubs": ["h"]},
            "deviceRuntimeContext.registrationId",
        ),
        (
            {"deviceRuntimeContext": {"registrationId": "  "}, "linkedHubs": ["h"]},
            "deviceRuntimeContext.registrationId",
        ),
        ({"deviceRuntimeContext": {"registrationId": "d"}}, "linkedHubs"),
        ({"deviceRuntimeContext": {"registrationId": "d"}, "linkedHubs": []}, "linkedHubs"),
        ({"deviceRuntimeContext": {"registrationId": "d"}, "linkedHubs": "h"}, "linkedHubs"),
        (
            {"deviceRuntimeContext": {"registrationId": "d"}, "linkedHubs": ["h", 3]},
            "linkedHubs[1]",
        ),
        (
            {"deviceRuntimeContext": {"registrationId": "d"}, "linkedHubs": ["h", ""]},
            "linkedHubs[1]",
        ),
        (
            {"deviceRuntimeContext": {"registrationId": "d"}, "linkedHubs": ["h", "a\nb"]},
            "linkedHubs[1]",
        ),
        (
            {"deviceRuntimeContext": {"registrationId": "d"}, "linkedHubs": ["h" * 254]},
            "linkedHubs[0]",
        ),
        (
            {"deviceRuntimeContext": {"registrationId": "d"}, "linkedHubs": ["h"] * 51},
            "linkedHubs",
        ),
        (
            {
                "deviceRuntimeContext": {"registrationId": "d", "currentIotHubHostName": 1},
                "linkedHubs": ["h"],
            },
            "deviceRuntimeContext.currentIotHubHostName",
        ),
        (
            {
                "enrollmentGroup": "g",
                "deviceRuntimeContext": {"registrationId": "d"},
                "linkedHubs": ["h"],
            },
            "enrollmentGroup",
        ),
        (
            {
                "enrollmentGroup": {"reprovisionPolicy": {"updateHubAssignment": "yes"}},
                "deviceRuntimeContext": {"registrationId": "d"},
                "linkedHubs": ["h"],
            },
            "enrollmentGroup.reprovisionPolicy.updateHubAssignment",
        ),
    ],
)
def test_malformed_request_names_the_field(document: object, field: str) -> None:
    """Each malformed shape raises RequestError naming the offending field."""
    with pytest.raises(RequestError) as raised:
        parse_request(document)
    assert raised.value.field == field
    assert raised.value.http_status == 400


@pytest.mark.parametrize("body", [b"", b"{", b"\xff\xfe", b"[" * 100_000, b"null"])
def test_undecodable_bodies_are_request_errors(body: bytes) -> None:
    """Empty, truncated, non-UTF-8, absurdly nested or null bodies are request errors."""
    with pytest.raises(RequestError) as raised:
        parse_request_body(body)
    assert raised.value.field == "body"


def test_error_message_does_not_quote_values() -> None:
    """A wrongly typed value is described by its type, never echoed (it could be secret)."""
    with pytest.raises(RequestError) as raised:
        parse_request(
            {"deviceRuntimeContext": {"registrationId": ["s3cret-value"]}, "linkedHubs": ["h"]}
        )
    assert "s3cret" not in str(raised.value)
    assert "an array" in str(raised.value)


@given(allocation_requests())
def test_well_formed_requests_always_parse(document: dict[str, object]) -> None:
    """Every well-formed request parses, keeping linkedHubs verbatim and in order."""
    request = parse_request(document)
    assert list(request.linked_hubs) == document["linkedHubs"]
