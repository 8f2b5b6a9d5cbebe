"""DPS semantics as the device SDKs see them over MQTT: pure decisions, no I/O, no clock.

What this module decides (docs/protocol/dps-mqtt.md, webhook.md, sas-and-keys.md):

- CONNECT: username `{idScope}/registrations/{registrationId}/api-version=...` (no `?`), client id
  = registration id, password a SAS token for `{idScope}/registrations/{registrationId}` (with or
  without `skn=registration`). An individual enrollment of the registration id wins over groups;
  its primary then secondary key is tried. Otherwise each group's key derived for the registration
  id, from the primary then the secondary group key. Anything else (expired, wrong resource, wrong
  key, unknown id scope, malformed) refuses the connection: CONNACK 5.
- Topics: register `$dps/registrations/PUT/iotdps-register/?$rid=R`, poll
  `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=R&operationId=O`; replies on
  `$dps/registrations/res/{status}/?$rid=R[&retry-after=N]` (lowercase `retry-after`).
- Register answers 202 `assigning` with an operation id; polls answer 202 while the allocation runs,
  then 200 with `assigned`, `failed` or `disabled`.
- Allocation: `static` = the one hub; `hashed` = a stable hash of the lower-cased registration id
  over the linked hubs; `custom` = the webhook, whose answer maps as DPS documents:

      200 + hub in linkedHubs         -> assigned (its initialTwin and payload honoured)
      200 + hub "" / null / absent    -> failed 400208
      200 + hub not in linkedHubs     -> failed 400207 (undocumented; inference)
      200 + unreadable body           -> failed 400207
      401                             -> failed 400209
      429, 5xx, unreachable           -> retried after 1, 10, 19, ... 82 s (ten retries), then 400207
      anything else                   -> failed 400207 "Custom allocation failed with status code: N"

- Re-registration applies the enrollment's reprovision policy:

      policy   hub re-evaluated  device data            substatus (hub changed / same hub)
      migrate  yes               twin moves with it     deviceDataMigrated / reprovisionedToInitialAssignment
      reset    yes               initial twin again     deviceDataReset / deviceDataReset
      never    no (webhook still called with linkedHubs = [current hub]; its hub is ignored)
                                 kept                   - / reprovisionedToInitialAssignment

  When the hub changes the device is removed from the old hub. The substatus for the same hub is
  undocumented (webhook.md §8): `reprovisionedToInitialAssignment` is this emulator's choice.
- A disabled enrollment (group or individual) ends in status `disabled`; no hub is touched.

Errors:

    DpsError
    ├── AuthenticationError   CONNECT refused; `connack` is 5, `reason` a short word (no secrets)
    └── DpsRequestError       a PUBLISH DPS cannot serve; `status` is the reply topic status,
                              `error_code` DPS's six-digit code, `rid` the request id if known
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any
from urllib.parse import unquote

from devtools.urls import mask_url
from emulator.config import (
    Allocation,
    EmulatorConfig,
    Enrollment,
    EnrollmentGroup,
    IndividualEnrollment,
    Reprovision,
)
from emulator.twin import InitialTwin, TwinError
from sas.errors import SasError
from sas.keys import derive_device_key
from sas.token import parse_sas_token, verify_sas_token

__all__ = [
    "ALLOCATION_API_VERSION",
    "RESPONSE_TOPIC_FILTER",
    "Assigned",
    "AuthenticationError",
    "DpsError",
    "DpsRequestError",
    "Failed",
    "HubPlan",
    "Operation",
    "Register",
    "Registrant",
    "RegistrationRecord",
    "RegistrationStatus",
    "Retry",
    "StatusQuery",
    "Substatus",
    "TwinSource",
    "WebhookOutcome",
    "allocation_request",
    "authenticate",
    "choose_native_hub",
    "error_body",
    "exhausted_outcome",
    "format_dps_timestamp",
    "linked_hubs",
    "new_operation_id",
    "operation_body",
    "parse_request",
    "parse_username",
    "plan_assignment",
    "reply_topic",
    "retry_delays",
    "subscription_allowed",
    "unreachable_outcome",
    "webhook_outcome",
]

RESPONSE_TOPIC_FILTER = "$dps/registrations/res/#"
REGISTER_TOPIC = "$dps/registrations/PUT/iotdps-register/"
STATUS_TOPIC = "$dps/registrations/GET/iotdps-get-operationstatus/"
ALLOCATION_API_VERSION = "2021-10-01"
WEBHOOK_RETRIES = 10
WEBHOOK_FIRST_DELAY = 1.0
WEBHOOK_DELAY_INCREMENT = 9.0

ERROR_CUSTOM_ALLOCATION_FAILED = 400207
ERROR_HUB_NOT_SPECIFIED = 400208
ERROR_WEBHOOK_UNAUTHORIZED = 400209
ERROR_BAD_REQUEST = 400001  # inference: DPS's code for a malformed device request is undocumented
ERROR_OPERATION_NOT_FOUND = 404001  # inference, as above


class DpsError(Exception):
    """Base class of every error this module raises."""


class AuthenticationError(DpsError):
    """A DPS CONNECT is refused; the message never contains a token or a key."""

    connack = 5

    def __init__(self, reason: str) -> None:
        super().__init__(f"DPS CONNECT refused: {reason}")
        self.reason = reason


class DpsRequestError(DpsError):
    """A device request DPS answers with an error status on the response topic."""

    def __init__(self, status: int, error_code: int, message: str, *, rid: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.rid = rid


class RegistrationStatus(StrEnum):
    """`status` of a RegistrationOperationStatus."""

    ASSIGNING = "assigning"
    ASSIGNED = "assigned"
    FAILED = "failed"
    DISABLED = "disabled"


class Substatus(StrEnum):
    """`registrationState.substatus` of an assigned registration."""

    INITIAL_ASSIGNMENT = "initialAssignment"
    DEVICE_DATA_MIGRATED = "deviceDataMigrated"
    DEVICE_DATA_RESET = "deviceDataReset"
    REPROVISIONED_TO_INITIAL_ASSIGNMENT = "reprovisionedToInitialAssignment"


@dataclass(frozen=True, kw_only=True)
class Registrant:
    """An authenticated DPS connection: who registers, through which enrollment, with which keys."""

    registration_id: str
    enrollment: EnrollmentGroup | IndividualEnrollment
    device_primary_key: str
    device_secondary_key: str

    def __repr__(self) -> str:
        return f"Registrant(registration_id={self.registration_id!r})"

    @property
    def device_id(self) -> str:
        """The hub device id: the individual enrollment's device id, else the registration id."""
        if isinstance(self.enrollment, IndividualEnrollment):
            return self.enrollment.device_id
        return self.registration_id


@dataclass(frozen=True)
class Register:
    """A register request: `payload` is the device's custom payload (None when absent)."""

    rid: str
    payload: object


@dataclass(frozen=True)
class StatusQuery:
    """An operation-status poll."""

    rid: str
    operation_id: str


@dataclass(frozen=True, kw_only=True)
class RegistrationRecord:
    """DPS's memory of a registration id's last successful assignment."""

    registration_id: str
    device_id: str
    assigned_hub: str
    substatus: Substatus
    created: str
    last_updated: str
    generation: int


@dataclass(frozen=True, kw_only=True)
class Operation:
    """One register operation and, once finished, its final registration state."""

    operation_id: str
    registration_id: str
    status: RegistrationStatus
    created: str
    last_updated: str
    record: RegistrationRecord | None = None
    payload: object = None
    error_code: int | None = None
    error_message: str | None = None


class TwinSource(Enum):
    """Where the device's twin comes from when DPS upserts it."""

    KEEP = "keep"  # leave the hub's twin alone
    MIGRATE = "migrate"  # copy the twin from `HubPlan.delete_from` (the old hub)
    INITIAL = "initial"  # a fresh twin from `HubPlan.initial_twin`


# With KEEP or MIGRATE, `HubPlan.initial_twin` is the fallback when there is no twin to keep or
# move (the device was deleted from its hub meanwhile).


@dataclass(frozen=True, kw_only=True)
class HubPlan:
    """What DPS does to the hubs for one successful assignment."""

    hub: str
    device_id: str
    twin_source: TwinSource
    initial_twin: InitialTwin | None
    delete_from: str | None


@dataclass(frozen=True, kw_only=True)
class Assigned:
    """The allocation chose `hub`; the webhook may add an initial twin and a payload."""

    hub: str
    initial_twin: InitialTwin | None = None
    payload: object = None


@dataclass(frozen=True)
class Failed:
    """The allocation failed with DPS's error code and message."""

    error_code: int
    message: str


@dataclass(frozen=True)
class Retry:
    """The webhook answered 429 or 5xx (or could not be reached): DPS calls it again later."""

    last_status: int | None


WebhookOutcome = Assigned | Failed | Retry


# --- CONNECT -----------------------------------------------------------------------------------


def parse_username(username: str) -> tuple[str, str]:
    """Split a DPS username into (id scope, registration id), or raise AuthenticationError."""
    scope, marker, rest = username.partition("/registrations/")
    registration_id, slash, api = rest.partition("/")
    if not (scope and marker and registration_id and slash) or "?" in username:
        raise AuthenticationError("malformed username")
    if not api.startswith("api-version="):
        raise AuthenticationError("malformed username")
    return scope, registration_id


def authenticate(
    config: EmulatorConfig,
    *,
    client_id: str,
    username: str,
    password: bytes | None,
    now: float,
) -> Registrant:
    """Decide a DPS CONNECT: the registrant, or AuthenticationError (CONNACK 5)."""
    scope, registration_id = parse_username(username)
    if scope.lower() != config.dps.id_scope.lower():
        raise AuthenticationError("unknown id scope")
    if registration_id != client_id:
        raise AuthenticationError("client id differs from the username's registration id")
    if password is None:
        raise AuthenticationError("no password")
    try:
        token = parse_sas_token(password.decode("utf-8"))
    except (UnicodeDecodeError, SasError):
        raise AuthenticationError("malformed token") from None
    resource = f"{config.dps.id_scope}/registrations/{registration_id}"
    individual = config.individual_enrollment(registration_id)
    candidates: list[tuple[EnrollmentGroup | IndividualEnrollment, tuple[str, str]]]
    if individual is not None:
        candidates = [(individual, individual.keys)]
    else:
        candidates = [
            (
                group,
                (
                    derive_device_key(group.primary_key, registration_id),
                    derive_device_key(group.secondary_key, registration_id),
                ),
            )
            for group in config.enrollment_groups
        ]
    reason = "no enrollment for the registration id"
    for enrollment, keys in candidates:
        try:
            verify_sas_token(token, keys, expected_resource=resource, now=now)
        except SasError as error:
            reason = error.reason
            continue
        return Registrant(
            registration_id=registration_id,
            enrollment=enrollment,
            device_primary_key=keys[0],
            device_secondary_key=keys[1],
        )
    raise AuthenticationError(reason)


def subscription_allowed(topic_filter: str) -> bool:
    """DPS grants only its response topic filter."""
    return topic_filter == RESPONSE_TOPIC_FILTER


# --- topics and bodies ----------------------------------------------------------------------------


def parse_request(topic: str, payload: bytes, *, registration_id: str) -> Register | StatusQuery:
    """Parse a device PUBLISH to DPS, or raise DpsRequestError (answered on the response topic)."""
    path, question, query = topic.partition("?")
    pairs: dict[str, str] = {}
    for pair in query.split("&") if query else ():
        name, _, value = pair.partition("=")
        pairs.setdefault(name, value)  # raw: the reply echoes `$rid` exactly as sent
    rid = pairs.get("$rid")
    if not question or not rid:
        raise DpsRequestError(400, ERROR_BAD_REQUEST, "Request id ($rid) is missing.", rid=rid)
    if path == REGISTER_TOPIC:
        return Register(rid=rid, payload=_register_payload(payload, registration_id, rid))
    if path == STATUS_TOPIC:
        operation_id = unquote(pairs.get("operationId", ""))
        if not operation_id:
            raise DpsRequestError(400, ERROR_BAD_REQUEST, "operationId is missing.", rid=rid)
        return StatusQuery(rid=rid, operation_id=operation_id)
    raise DpsRequestError(404, ERROR_OPERATION_NOT_FOUND, "Unknown DPS topic.", rid=rid)


def _register_payload(payload: bytes, registration_id: str, rid: str) -> object:
    try:
        body = json.loads(payload.decode("utf-8")) if payload.strip() else {}
    except (UnicodeDecodeError, ValueError):
        raise DpsRequestError(
            400, ERROR_BAD_REQUEST, "Register body: expected JSON.", rid=rid
        ) from None
    if not isinstance(body, dict):
        raise DpsRequestError(400, ERROR_BAD_REQUEST, "Register body: expected an object.", rid=rid)
    sent_id = body.get("registrationId", registration_id)
    if not isinstance(sent_id, str) or sent_id.lower() != registration_id.lower():
        raise DpsRequestError(
            400,
            ERROR_BAD_REQUEST,
            "Register body: registrationId must match the connection's registration id.",
            rid=rid,
        )
    return body.get("payload")


def reply_topic(status: int, rid: str, *, retry_after: int | None = None) -> str:
    """The response topic for a request id (`retry-after` lowercase, as the SDK reads it)."""
    topic = f"$dps/registrations/res/{status}/?$rid={rid}"
    if retry_after is not None:
        topic += f"&retry-after={retry_after}"
    return topic


def format_dps_timestamp(now: float) -> str:
    """DPS's timestamp form: ISO-8601 UTC with seven fractional digits and `Z`."""
    moment = datetime.fromtimestamp(now, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def new_operation_id(entropy: bytes) -> str:
    """An operation id shaped like DPS's `{digit}.{16 hex}.{guid}` from 24 random bytes."""
    if len(entropy) < 24:
        raise ValueError("entropy: expected at least 24 bytes")
    return f"{entropy[0] % 10}.{entropy[1:9].hex()}.{uuid.UUID(bytes=entropy[8:24])}"


def error_body(error_code: int, message: str, *, now: float) -> bytes:
    """The body of an error status on the response topic (dps-mqtt.md §5)."""
    body = {
        "errorCode": error_code,
        "trackingId": "",
        "message": message,
        "timestampUtc": format_dps_timestamp(now),
    }
    return json.dumps(body).encode("utf-8")


def _etag(registration_id: str, generation: int) -> str:
    seed = hashlib.sha256(f"{registration_id.lower()}\n{generation}".encode()).digest()
    return base64.b64encode(f'"{uuid.UUID(bytes=seed[:16])}"'.encode()).decode("ascii")


def operation_body(operation: Operation) -> bytes:
    """The RegistrationOperationStatus JSON for an operation, as far as it has got."""
    body: dict[str, Any] = {"operationId": operation.operation_id, "status": operation.status.value}
    if operation.status is RegistrationStatus.ASSIGNING:
        return json.dumps(body).encode("utf-8")
    state: dict[str, Any] = {
        "registrationId": operation.registration_id,
        "createdDateTimeUtc": operation.created,
        "status": operation.status.value,
    }
    record = operation.record
    if operation.status is RegistrationStatus.ASSIGNED and record is not None:
        state.update(
            assignedHub=record.assigned_hub,
            deviceId=record.device_id,
            substatus=record.substatus.value,
            createdDateTimeUtc=record.created,
        )
    if operation.error_code is not None:
        state.update(errorCode=operation.error_code, errorMessage=operation.error_message)
    generation = record.generation if record is not None else 0
    state.update(
        lastUpdatedDateTimeUtc=operation.last_updated,
        etag=_etag(operation.registration_id, generation),
    )
    if operation.status is RegistrationStatus.ASSIGNED and operation.payload is not None:
        state["payload"] = operation.payload
    body["registrationState"] = state
    return json.dumps(body).encode("utf-8")


# --- allocation -----------------------------------------------------------------------------------


def linked_hubs(enrollment: Enrollment, record: RegistrationRecord | None) -> tuple[str, ...]:
    """The hubs a registration may land on: the current hub only under `never` re-provisioning."""
    if record is not None and enrollment.reprovision is Reprovision.NEVER:
        return (record.assigned_hub,)
    return enrollment.hubs


def choose_native_hub(
    enrollment: Enrollment, registration_id: str, hubs: Sequence[str]
) -> Assigned | Failed:
    """Allocate `static` and `hashed` enrollments without a webhook."""
    if not hubs:
        return Failed(400, "No IoT hub is linked to the enrollment.")
    if enrollment.allocation is Allocation.STATIC:
        return Assigned(hub=hubs[0])
    digest = hashlib.sha256(registration_id.lower().encode("utf-8")).digest()
    return Assigned(hub=hubs[int.from_bytes(digest[:8], "big") % len(hubs)])


def _enrollment_etag(identity: str) -> str:
    seed = hashlib.sha256(identity.encode("utf-8")).digest()
    return f'"{uuid.UUID(bytes=seed[:16])}"'


def allocation_request(
    registrant: Registrant,
    *,
    record: RegistrationRecord | None,
    payload: object,
    linked: Sequence[str],
    enrollment_created: str,
) -> dict[str, Any]:
    """The AllocationRequest DPS POSTs to the webhook (shaped like tests/fixtures/webhook).

    Key material is stripped (`attestation` is `{"type": "symmetricKey"}`, `symmetricKey` is `{}`)
    and the webhook URL's query, which carries the function key, is masked as `?****`.
    """
    enrollment = registrant.enrollment
    webhook_url = enrollment.webhook_url or ""
    record_json: dict[str, Any] = {}
    if isinstance(enrollment, EnrollmentGroup):
        record_json["enrollmentGroupId"] = enrollment.id
        identity = f"group:{enrollment.id}"
    else:
        record_json["registrationId"] = enrollment.registration_id
        record_json["deviceId"] = enrollment.device_id
        identity = f"individual:{enrollment.registration_id}"
    record_json.update(
        {
            "attestation": {"type": "symmetricKey"},
            "capabilities": {"iotEdge": False},
            "etag": _enrollment_etag(identity),
            "provisioningStatus": "enabled" if enrollment.enabled else "disabled",
            "reprovisionPolicy": {
                "updateHubAssignment": enrollment.reprovision.update_hub_assignment,
                "migrateDeviceData": enrollment.reprovision.migrate_device_data,
            },
            "createdDateTimeUtc": enrollment_created,
            "lastUpdatedDateTimeUtc": enrollment_created,
            "allocationPolicy": enrollment.allocation.value,
            "iotHubs": list(enrollment.hubs),
            "customAllocationDefinition": {
                "webhookUrl": mask_url(webhook_url),
                "apiVersion": ALLOCATION_API_VERSION,
            },
        }
    )
    context: dict[str, Any] = {"registrationId": registrant.registration_id}
    if record is not None:
        context["currentIotHubHostName"] = record.assigned_hub
        context["currentDeviceId"] = record.device_id
    context["symmetricKey"] = {}
    if payload is not None:
        context["payload"] = payload
    kind = "enrollmentGroup" if isinstance(enrollment, EnrollmentGroup) else "individualEnrollment"
    return {kind: record_json, "deviceRuntimeContext": context, "linkedHubs": list(linked)}


def retry_delays(time_scale: float = 1.0) -> tuple[float, ...]:
    """DPS's waits before each webhook retry: 1 s, then 9 s more each time, ten retries."""
    if time_scale <= 0:
        raise ValueError("time_scale: expected a positive number")
    return tuple(
        (WEBHOOK_FIRST_DELAY + WEBHOOK_DELAY_INCREMENT * attempt) * time_scale
        for attempt in range(WEBHOOK_RETRIES)
    )


def _custom_failed(status: int) -> Failed:
    return Failed(
        ERROR_CUSTOM_ALLOCATION_FAILED, f"Custom allocation failed with status code: {status}"
    )


def webhook_outcome(status: int, body: bytes, linked: Sequence[str]) -> WebhookOutcome:
    """Map one webhook HTTP answer to DPS's outcome (table in the module docstring)."""
    if status == 401:
        return Failed(ERROR_WEBHOOK_UNAUTHORIZED, "Custom allocation failed: unauthorized access.")
    if status >= 429:
        return Retry(status)
    if status != 200:
        return _custom_failed(status)
    try:
        answer = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return Failed(ERROR_CUSTOM_ALLOCATION_FAILED, "Custom allocation returned invalid JSON.")
    if not isinstance(answer, dict):
        return Failed(ERROR_CUSTOM_ALLOCATION_FAILED, "Custom allocation returned invalid JSON.")
    hub = answer.get("iotHubHostName")
    if hub is None or hub == "":
        return Failed(
            ERROR_HUB_NOT_SPECIFIED, "Custom allocation did not specify an IoT hub host name."
        )
    by_name = {name.lower(): name for name in linked}
    if not isinstance(hub, str) or hub.lower() not in by_name:
        return Failed(
            ERROR_CUSTOM_ALLOCATION_FAILED,
            "Custom allocation returned an IoT hub that is not linked to the enrollment.",
        )
    initial_twin: InitialTwin | None = None
    if answer.get("initialTwin") is not None:
        try:
            initial_twin = InitialTwin.from_json(answer["initialTwin"])
        except TwinError as error:
            return Failed(
                ERROR_CUSTOM_ALLOCATION_FAILED, f"Custom allocation returned an invalid {error}"
            )
    return Assigned(
        hub=by_name[hub.lower()], initial_twin=initial_twin, payload=answer.get("payload")
    )


def unreachable_outcome() -> Failed:
    """The outcome when every attempt to reach the webhook failed or was answered 429/5xx."""
    return Failed(ERROR_CUSTOM_ALLOCATION_FAILED, "Custom allocation failed: webhook unavailable.")


def exhausted_outcome(last: Retry) -> Failed:
    """The outcome after the last retry still got 429/5xx (or no answer)."""
    if last.last_status is None:
        return unreachable_outcome()
    return _custom_failed(last.last_status)


def plan_assignment(
    registrant: Registrant,
    assigned: Assigned,
    *,
    record: RegistrationRecord | None,
    now: float,
) -> tuple[RegistrationRecord, HubPlan]:
    """Apply the reprovision policy to an allocation: the new record and what to do to the hubs."""
    enrollment = registrant.enrollment
    stamp = format_dps_timestamp(now)
    initial = assigned.initial_twin or enrollment.initial_twin
    device_id = registrant.device_id
    if record is None:
        hub, substatus = assigned.hub, Substatus.INITIAL_ASSIGNMENT
        source, delete_from = TwinSource.INITIAL, None
    elif enrollment.reprovision is Reprovision.NEVER:
        hub, substatus = record.assigned_hub, Substatus.REPROVISIONED_TO_INITIAL_ASSIGNMENT
        source, delete_from = TwinSource.KEEP, None
    else:
        hub = assigned.hub
        moved = hub.lower() != record.assigned_hub.lower() or device_id != record.device_id
        delete_from = record.assigned_hub if moved else None
        if enrollment.reprovision is Reprovision.RESET:
            substatus, source = Substatus.DEVICE_DATA_RESET, TwinSource.INITIAL
        elif moved:
            substatus, source = Substatus.DEVICE_DATA_MIGRATED, TwinSource.MIGRATE
        else:
            substatus = Substatus.REPROVISIONED_TO_INITIAL_ASSIGNMENT
            source = TwinSource.KEEP
    new_record = RegistrationRecord(
        registration_id=registrant.registration_id,
        device_id=device_id,
        assigned_hub=hub,
        substatus=substatus,
        created=record.created if record is not None else stamp,
        last_updated=stamp,
        generation=record.generation + 1 if record is not None else 1,
    )
    plan = HubPlan(
        hub=hub,
        device_id=device_id,
        twin_source=source,
        initial_twin=initial,
        delete_from=delete_from,
    )
    return new_record, plan
