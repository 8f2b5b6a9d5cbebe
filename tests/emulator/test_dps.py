"""Tests for emulator.dps.rules: the pure DPS semantics."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.config import EmulatorConfig, parse_config
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
from emulator.dps.auth import AuthenticationError, Registrant, authenticate
from emulator.dps.reprovision import TwinSource, plan_assignment
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
from emulator.hub.twin import InitialTwin
from sas.keys import derive_device_key
from sas.token import generate_sas_token
from tests.fixtures import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES
NOW = 1_700_000_000.0
GROUP_KEY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="  # emu-dev-001 vector
OTHER_KEY = "iZlcsgZYcqfw02/f1mcrIYTcbCmWZSgIgQ4ED9Kp/fE="
USERNAME = (
    "0ne00000001/registrations/dev-001/api-version=2019-03-31"
    "&ClientVersion=azure-iot-device-provisioning-py%2F2.14.0"
)
HUBS = ("toasters.azure-devices.net", "heatpumps.azure-devices.net")


def sas_vector(vector_id: str) -> dict[str, Any]:
    """One SAS vector from tests/fixtures/sas/vectors.json."""
    vectors = json.loads((FIXTURES / "sas" / "vectors.json").read_text())
    return next(vector for vector in vectors if vector["id"] == vector_id)


def make_config(**group: Any) -> EmulatorConfig:
    """A configuration with one group (overridable) and one individual enrollment."""
    entry = {
        "id": "emu-group",
        "primary_key": OTHER_KEY,
        "secondary_key": GROUP_KEY,
        "allocation": "custom",
        "webhook_url": "http://127.0.0.1:7071/api/allocate?code=function-key",
        **group,
    }
    return parse_config(
        {
            "hubs": [{"name": name} for name in HUBS],
            "enrollment_groups": [entry],
            "individual_enrollments": [
                {
                    "registration_id": "dev-42",
                    "device_id": "device-42",
                    "primary_key": GROUP_KEY,
                    "secondary_key": OTHER_KEY,
                    "allocation": "static",
                    "hubs": [HUBS[1]],
                }
            ],
        },
        source="test.toml",
    )


def registrant(config: EmulatorConfig, registration_id: str = "dev-001") -> Registrant:
    """Authenticate a registration id with a fresh token from the group's primary key."""
    group = config.enrollment_groups[0]
    key = derive_device_key(group.primary_key, registration_id)
    token = generate_sas_token(f"0ne00000001/registrations/{registration_id}", key, int(NOW) + 60)
    return authenticate(
        config,
        client_id=registration_id,
        username=USERNAME.replace("dev-001", registration_id),
        password=token.encode(),
        now=NOW,
    )


@pytest.mark.parametrize("vector_id", ["E1", "N1"])
def test_group_token_vectors_authenticate_with_the_secondary_key(vector_id: str) -> None:
    """Python (encoded sr) and Node (raw sr, skn=registration) tokens pass via the derived key."""
    result = authenticate(
        make_config(),
        client_id="dev-001",
        username=USERNAME,
        password=sas_vector(vector_id)["token"].encode(),
        now=NOW,
    )
    assert result.registration_id == "dev-001"
    assert result.device_primary_key == derive_device_key(OTHER_KEY, "dev-001")
    assert result.device_secondary_key == sas_vector("E1")["key"]


def test_individual_enrollment_uses_its_own_keys() -> None:
    """An individual enrollment authenticates with its keys and names its device id."""
    config = make_config()
    token = generate_sas_token("0ne00000001/registrations/dev-42", OTHER_KEY, int(NOW) + 60)
    result = authenticate(
        config,
        client_id="dev-42",
        username=USERNAME.replace("dev-001", "dev-42"),
        password=token.encode(),
        now=NOW,
    )
    assert result.device_id == "device-42"
    assert (result.device_primary_key, result.device_secondary_key) == (GROUP_KEY, OTHER_KEY)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"now": 2_000_000_001.0}, "expired"),
        ({"username": USERNAME.replace("0ne00000001", "0ne00000999")}, "unknown id scope"),
        ({"username": "0ne00000001/registrations/dev-001/?api-version=2019-03-31"}, "malformed"),
        ({"client_id": "dev-002"}, "client id"),
        ({"password": None}, "no password"),
        ({"password": b"Bearer x"}, "malformed token"),
        ({"password": b"\xff"}, "malformed token"),
    ],
)
def test_bad_connects_are_refused(change: dict[str, Any], reason: str) -> None:
    """Expired, foreign, malformed or mismatched CONNECTs raise AuthenticationError (CONNACK 5)."""
    arguments: dict[str, Any] = {
        "client_id": "dev-001",
        "username": USERNAME,
        "password": sas_vector("E1")["token"].encode(),
        "now": NOW,
        **change,
    }
    with pytest.raises(AuthenticationError) as caught:
        authenticate(make_config(), **arguments)
    assert reason in caught.value.reason or reason in str(caught.value)
    assert caught.value.connack == 5


def test_wrong_key_is_refused_without_leaking_the_token() -> None:
    """A token signed with another key is refused; the error quotes no token or key."""
    token = generate_sas_token("0ne00000001/registrations/dev-001", GROUP_KEY, int(NOW) + 60)
    with pytest.raises(AuthenticationError) as caught:
        authenticate(
            make_config(), client_id="dev-001", username=USERNAME, password=token.encode(), now=NOW
        )
    assert caught.value.reason == "bad_signature"
    assert token.split("sig=")[1].split("&")[0] not in str(caught.value)


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


def _record(hub: str, device_id: str = "dev-001") -> RegistrationRecord:
    return RegistrationRecord(
        registration_id="dev-001",
        device_id=device_id,
        assigned_hub=hub,
        substatus=Substatus.INITIAL_ASSIGNMENT,
        created="first",
        last_updated="first",
        generation=1,
    )


ENROLLMENT_TWIN = InitialTwin(tags={"from": "enrollment"})
WEBHOOK_TWIN = InitialTwin(tags={"from": "webhook"})


@pytest.mark.parametrize(
    ("policy", "old_hub", "new_hub", "substatus", "source", "deleted"),
    [
        ("migrate", None, HUBS[0], "initialAssignment", TwinSource.INITIAL, None),
        ("migrate", HUBS[0], HUBS[1], "deviceDataMigrated", TwinSource.MIGRATE, HUBS[0]),
        (
            "migrate",
            HUBS[0],
            HUBS[0],
            "reprovisionedToInitialAssignment",
            TwinSource.KEEP,
            None,
        ),
        ("reset", HUBS[0], HUBS[1], "deviceDataReset", TwinSource.INITIAL, HUBS[0]),
        ("reset", HUBS[0], HUBS[0], "deviceDataReset", TwinSource.INITIAL, None),
        (
            "never",
            HUBS[0],
            HUBS[1],
            "reprovisionedToInitialAssignment",
            TwinSource.KEEP,
            None,
        ),
    ],
)
def test_reprovision_policies_plan_the_hub_changes(
    *,
    policy: str,
    old_hub: str | None,
    new_hub: str,
    substatus: str,
    source: TwinSource,
    deleted: str | None,
) -> None:
    """Each policy picks the hub, substatus, twin source and old-hub deletion the table says."""
    config = make_config(reprovision=policy, initial_twin={"tags": {"from": "enrollment"}})
    who = registrant(config)
    record = _record(old_hub) if old_hub else None
    new_record, plan = plan_assignment(
        who, Assigned(hub=new_hub, initial_twin=WEBHOOK_TWIN), record=record, now=NOW
    )
    expected_hub = old_hub if policy == "never" and old_hub else new_hub
    assert (plan.hub, new_record.assigned_hub) == (expected_hub, expected_hub)
    assert new_record.substatus == substatus
    assert (plan.twin_source, plan.delete_from) == (source, deleted)
    assert plan.initial_twin == WEBHOOK_TWIN
    assert new_record.created == ("first" if record else format_dps_timestamp(NOW))


def test_enrollment_twin_applies_when_the_webhook_sends_none() -> None:
    """Without a webhook initialTwin the enrollment's initial twin is used."""
    config = make_config(initial_twin={"tags": {"from": "enrollment"}})
    _, plan = plan_assignment(registrant(config), Assigned(hub=HUBS[0]), record=None, now=NOW)
    assert plan.initial_twin == ENROLLMENT_TWIN


def test_never_policy_links_only_the_current_hub() -> None:
    """Under never-reprovision a re-registration's linkedHubs is the current hub only."""
    enrollment = make_config(reprovision="never").enrollment_groups[0]
    assert linked_hubs(enrollment, _record(HUBS[1])) == (HUBS[1],)
    assert linked_hubs(enrollment, None) == HUBS
