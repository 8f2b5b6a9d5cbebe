"""DPS over MQTT on the wire: topics, requests, reply topics and bodies, records. Pure.

What the device SDKs send and get (docs/protocol/dps-mqtt.md §3-§5):

- register `$dps/registrations/PUT/iotdps-register/?$rid=R` (body `{"registrationId", "payload"?}`),
  poll `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=R&operationId=O`; replies on
  `$dps/registrations/res/{status}/?$rid=R[&retry-after=N]` (lowercase `retry-after`, which is all
  the SDK reads); the only subscription DPS grants is `$dps/registrations/res/#`.
- Register answers 202 `assigning` with an operation id (`{"operationId", "status"}`); polls answer
  202 while the allocation runs, their body adding `registrationState: {"registrationId", "status":
  "assigning"}` as DPS's does, then 200 with `assigned`, `failed` or `disabled`
  (`operation_body`); both 202s carry `retry-after` (3 s on DPS). An error status carries
  `{"errorCode", "trackingId", "message", "timestampUtc"}` (`error_body`) with one of DPS's codes
  (`codes.DpsErrorCode`).
- A register body is a DeviceRegistration: `registrationId`, `payload`, `tpm` (member names
  matched without regard to case, as DPS's deserializer does); anything else, or a body that is
  not a JSON object, is DPS's 400012 "Deserialization error."; a `registrationId` other than the
  connection's is 401002.
- DPS's memory of an assignment (`RegistrationRecord`) and of one register call (`Operation`).

Errors:

    DpsError
    └── DpsRequestError   a PUBLISH DPS cannot serve; `code` is DPS's error code (its `status` the
                          reply topic's status), `rid` the request id if known
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import unquote

from allocation.errors import RequestError
from allocation.strict_json import decode
from emulator.dps.codes import DpsErrorCode

RESPONSE_TOPIC_FILTER = "$dps/registrations/res/#"
REGISTER_TOPIC = "$dps/registrations/PUT/iotdps-register/"
STATUS_TOPIC = "$dps/registrations/GET/iotdps-get-operationstatus/"
RETRY_AFTER = 3  # seconds, on every 202 DPS sends (docs/protocol/dps-mqtt.md §8)
REGISTER_MEMBERS = ("registrationId", "payload", "tpm")  # DeviceRegistration, REST spec 2021-10-01
DESERIALIZATION_ERROR = "Deserialization error."  # DPS's message for 400012, word for word
MAX_NAME_SHOWN = 64


class DpsError(Exception):
    """Base class of every error this module raises."""


class DpsRequestError(DpsError):
    """A device request DPS answers with an error status on the response topic."""

    def __init__(self, code: DpsErrorCode, message: str, *, rid: str | None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.rid = rid

    @property
    def status(self) -> int:
        """The status of the reply topic that answers the request."""
        return self.code.status


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


@dataclass(frozen=True)
class Register:
    """A register request: `payload` is the device's custom payload (None when absent)."""

    rid: str
    payload: object


@dataclass(frozen=True)
class Reply:
    """DPS's answer to a register or a poll, whatever carries it: the status (the MQTT reply
    topic's, or the HTTP response's), the JSON body and the `retry-after` seconds, if any."""

    status: int
    body: bytes
    retry_after: int | None = None


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


def subscription_allowed(topic_filter: str) -> bool:
    """DPS grants only its response topic filter."""
    return topic_filter == RESPONSE_TOPIC_FILTER


def parse_request(topic: str, payload: bytes, *, registration_id: str) -> Register | StatusQuery:
    """Parse a device PUBLISH to DPS, or raise DpsRequestError (answered on the response topic)."""
    path, question, query = topic.partition("?")
    pairs: dict[str, str] = {}
    for pair in query.split("&") if query else ():
        name, _, value = pair.partition("=")
        pairs.setdefault(name, value)  # raw: the reply echoes `$rid` exactly as sent
    rid = pairs.get("$rid")
    if not question or not rid:
        raise DpsRequestError(
            DpsErrorCode.ARGUMENT_INVALID, "Request id ($rid) is missing.", rid=rid or None
        )
    if path == REGISTER_TOPIC:
        return Register(rid=rid, payload=register_payload(payload, registration_id, rid=rid))
    if path == STATUS_TOPIC:
        operation_id = unquote(pairs.get("operationId", ""))
        if not operation_id:
            raise DpsRequestError(DpsErrorCode.ARGUMENT_INVALID, "operationId is missing.", rid=rid)
        return StatusQuery(rid=rid, operation_id=operation_id)
    raise DpsRequestError(
        DpsErrorCode.ARGUMENT_INVALID,
        "Unknown DPS topic: expected a register or an operation status request.",
        rid=rid,
    )


def _shown(name: str) -> str:
    return repr(name if len(name) <= MAX_NAME_SHOWN else name[:MAX_NAME_SHOWN] + "...")


def register_payload(payload: bytes, registration_id: str, *, rid: str | None = None) -> object:
    """The device's payload from a register body, MQTT or HTTPS (None when absent); refusals as
    DPS's."""

    def refused(detail: str) -> DpsRequestError:
        return DpsRequestError(
            DpsErrorCode.DESERIALIZATION_ERROR, f"{DESERIALIZATION_ERROR} {detail}", rid=rid
        )

    if not payload.strip():
        return None
    try:
        body = decode(payload, field="register body")
    except RequestError as error:
        raise refused(f"{error}.") from None
    if not isinstance(body, dict):
        raise refused("Register body: expected a JSON object.")
    known = {name.lower(): name for name in REGISTER_MEMBERS}
    members: dict[str, object] = {}
    for name, value in body.items():
        member = known.get(name.lower())
        if member is None:
            raise refused(
                f"Register body: unknown member {_shown(name)}; expected only "
                f"{', '.join(REGISTER_MEMBERS)} (a device's own data goes in payload)."
            )
        if member in members:
            raise refused(f"Register body: {member} appears twice.")
        members[member] = value
    sent_id = members.get("registrationId", registration_id)
    if not isinstance(sent_id, str):
        raise refused("Register body: registrationId: expected a string.")
    if sent_id.lower() != registration_id.lower():
        raise DpsRequestError(
            DpsErrorCode.UNAUTHORIZED,
            "Unauthorized: the body's registrationId is not the registration the connection "
            "authenticated.",
            rid=rid,
        )
    return members.get("payload")


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


def error_body(code: int, message: str, *, now: float) -> bytes:
    """The body of an error status on the response topic (dps-mqtt.md §5)."""
    body = {
        "errorCode": int(code),
        "trackingId": "",
        "message": message,
        "timestampUtc": format_dps_timestamp(now),
    }
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def _etag(registration_id: str, generation: int) -> str:
    seed = hashlib.sha256(f"{registration_id.lower()}\n{generation}".encode()).digest()
    return base64.b64encode(f'"{uuid.UUID(bytes=seed[:16])}"'.encode()).decode("ascii")


def operation_body(operation: Operation, *, polled: bool = False) -> bytes:
    """The RegistrationOperationStatus JSON for an operation, as far as it has got.

    While assigning, the answer to the register is `{"operationId", "status"}`; a poll's answer
    adds `registrationState: {"registrationId", "status"}`, as DPS's do.
    """
    body: dict[str, Any] = {"operationId": operation.operation_id, "status": operation.status.value}
    if operation.status is RegistrationStatus.ASSIGNING:
        if polled:
            body["registrationState"] = {
                "registrationId": operation.registration_id,
                "status": operation.status.value,
            }
        return json.dumps(body, separators=(",", ":")).encode("utf-8")
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
    return json.dumps(body, separators=(",", ":")).encode("utf-8")
