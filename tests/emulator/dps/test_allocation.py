"""Tests for emulator.dps.allocation: native allocation and the custom-allocation webhook."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.config import parse_config
from emulator.dps.allocation import (
    Assigned,
    Failed,
    Retry,
    allocation_request,
    choose_native_hub,
    exhausted_outcome,
    linked_hubs,
    retry_delays,
    webhook_outcome,
)
from emulator.dps.auth import authenticate
from emulator.dps.wire import RegistrationRecord, Substatus
from emulator.hub.twin import InitialTwin
from sas.token import generate_sas_token
from tests.emulator.dps.registrants import (
    FIXTURES,
    GROUP_KEY,
    HUBS,
    NOW,
    OTHER_KEY,
    USERNAME,
    assigned_record,
    make_config,
    registrant,
)


@pytest.mark.parametrize(
    ("fixture", "record_hub", "payload"),
    [
        ("initial-group-request.json", None, None),
        (
            "reprovision-with-payload-request.json",
            "contoso-toasters-hub-1098.azure-devices.net",
            {"MyDeviceFirmwareVersion": "12.0.2.5", "MyDeviceProvisioningVersion": "1.0.0.0"},
        ),
    ],
)
def test_allocation_request_matches_the_documented_fixtures(
    fixture: str, record_hub: str | None, payload: object
) -> None:
    """The AllocationRequest has exactly the fixture's shape; keys stripped, query masked."""
    expected = json.loads((FIXTURES / "webhook" / fixture).read_text())
    group = expected["enrollmentGroup"]
    hubs = group["iotHubs"]
    masked = group["customAllocationDefinition"]["webhookUrl"]
    config = parse_config(
        {
            "hubs": [{"name": name} for name in hubs],
            "enrollment_groups": [
                {
                    "id": group["enrollmentGroupId"],
                    "primary_key": GROUP_KEY,
                    "secondary_key": OTHER_KEY,
                    "allocation": "custom",
                    "webhook_url": masked.replace("?****", "?code=the-function-key"),
                }
            ],
        },
        source="t.toml",
    )
    who = registrant(config, expected["deviceRuntimeContext"]["registrationId"])
    record = None
    if record_hub is not None:
        record = RegistrationRecord(
            registration_id=who.registration_id,
            device_id=who.registration_id,
            assigned_hub=record_hub,
            substatus=Substatus.INITIAL_ASSIGNMENT,
            created="c",
            last_updated="u",
            generation=1,
        )
    built = allocation_request(
        who,
        record=record,
        payload=payload,
        linked=hubs,
        enrollment_created=group["createdDateTimeUtc"],
    )
    for instance_specific in ("etag", "lastUpdatedDateTimeUtc"):
        built["enrollmentGroup"][instance_specific] = group[instance_specific]
    assert built == expected
    text = json.dumps(built)
    assert "the-function-key" not in text
    assert GROUP_KEY not in text


def test_individual_allocation_request_names_the_enrollment() -> None:
    """An individual enrollment is sent as individualEnrollment with registrationId and deviceId."""
    config = parse_config(
        {
            "hubs": [{"name": HUBS[0]}],
            "individual_enrollments": [
                {
                    "registration_id": "dev-42",
                    "primary_key": GROUP_KEY,
                    "secondary_key": OTHER_KEY,
                    "allocation": "custom",
                    "webhook_url": "http://h/api/allocate",
                }
            ],
        },
        source="t.toml",
    )
    token = generate_sas_token("0ne00000001/registrations/dev-42", GROUP_KEY, int(NOW) + 60)
    who = authenticate(
        config,
        client_id="dev-42",
        username=USERNAME.replace("dev-001", "dev-42"),
        password=token.encode(),
        now=NOW,
    )
    built = allocation_request(
        who, record=None, payload=None, linked=[HUBS[0]], enrollment_created="t"
    )
    enrollment = built["individualEnrollment"]
    assert (enrollment["registrationId"], enrollment["deviceId"]) == ("dev-42", "dev-42")
    assert enrollment["customAllocationDefinition"]["webhookUrl"] == "http://h/api/allocate"
    assert "enrollmentGroup" not in built


def test_retry_schedule_is_dps_s() -> None:
    """Ten retries: 1 s, then 9 s more each time (415 s in all); time_scale shrinks them."""
    delays = retry_delays()
    assert delays == (1, 10, 19, 28, 37, 46, 55, 64, 73, 82)
    assert sum(delays) == 415
    assert retry_delays(0.01)[1] == pytest.approx(0.1)


@given(st.integers(min_value=100, max_value=599).filter(lambda status: status != 200))
def test_every_non_200_status_maps_as_the_table_says(status: int) -> None:
    """401 -> 400209, >= 429 -> retry, any other status -> 400207 naming the status."""
    outcome = webhook_outcome(status, b"{}", HUBS)
    if status == 401:
        assert outcome == Failed(400209, "Custom allocation failed: unauthorized access.")
    elif status >= 429:
        assert outcome == Retry(status)
    else:
        assert outcome == Failed(400207, f"Custom allocation failed with status code: {status}")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"iotHubHostName": ""}', 400208),
        (b'{"iotHubHostName": null}', 400208),
        (b"{}", 400208),
        (b'{"iotHubHostName": "elsewhere.azure-devices.net"}', 400207),
        (b"not json", 400207),
        (b'{"iotHubHostName": "toasters.azure-devices.net", "initialTwin": [1]}', 400207),
    ],
)
def test_unusable_200_answers_fail(body: bytes, expected: int) -> None:
    """Empty, null or absent hubs fail 400208; unlinked hubs and bad JSON fail 400207."""
    outcome = webhook_outcome(200, body, HUBS)
    assert isinstance(outcome, Failed)
    assert outcome.error_code == expected


def test_200_answer_is_assigned_with_twin_and_payload() -> None:
    """A linked hub (any case) is assigned with the linkedHubs spelling, twin and payload."""
    body = (FIXTURES / "webhook" / "response-with-payload.json").read_bytes()
    hub = "custom-allocation-toasters-hub.azure-devices.net"
    outcome = webhook_outcome(200, body, [hub.upper()])
    assert outcome == Assigned(
        hub=hub.upper(),
        initial_twin=InitialTwin(
            tags={"deviceType": "toaster"}, desired={"state": "ready", "darknessSetting": "medium"}
        ),
        payload={"property1": "value1"},
    )


def test_exhausted_retries_fail_with_the_last_status() -> None:
    """After the last retry the registration fails 400207 with the last status or unreachable."""
    assert exhausted_outcome(Retry(503)).message.endswith("status code: 503")
    assert exhausted_outcome(Retry(None)).error_code == 400207


@given(st.text(alphabet="abcdefXYZ0189-._:", min_size=1, max_size=40))
def test_hashed_allocation_is_stable_and_linked(registration_id: str) -> None:
    """Hashed allocation picks a linked hub, the same one for any case of the id."""
    config = make_config(allocation="hashed", webhook_url=None)
    enrollment = config.enrollment_groups[0]
    first = choose_native_hub(enrollment, registration_id, HUBS)
    assert isinstance(first, Assigned)
    assert first.hub in HUBS
    assert choose_native_hub(enrollment, registration_id.upper(), HUBS) == first


def test_hashed_allocation_spreads_devices() -> None:
    """Over many ids both hubs get devices."""
    config = make_config(allocation="hashed", webhook_url=None)
    chosen = {choose_native_hub(config.enrollment_groups[0], f"dev-{n}", HUBS) for n in range(50)}
    assert chosen == {Assigned(hub=HUBS[0]), Assigned(hub=HUBS[1])}


def test_static_allocation_uses_the_one_hub() -> None:
    """Static allocation assigns the enrollment's single hub."""
    individual = make_config().individual_enrollments[0]
    assert choose_native_hub(individual, "dev-42", individual.hubs) == Assigned(hub=HUBS[1])


def test_never_policy_links_only_the_current_hub() -> None:
    """Under never-reprovision a re-registration's linkedHubs is the current hub only."""
    enrollment = make_config(reprovision="never").enrollment_groups[0]
    assert linked_hubs(enrollment, assigned_record(HUBS[1])) == (HUBS[1],)
    assert linked_hubs(enrollment, None) == HUBS
