"""DPS over MQTT on the wire: topics, requests, reply topics and bodies, records. Pure.

What the device SDKs send and get (docs/protocol/dps-mqtt.md §3-§5):

- register `$dps/registrations/PUT/iotdps-register/?$rid=R` (body `{"registrationId", "payload"?}`),
  poll `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=R&operationId=O`; replies on
  `$dps/registrations/res/{status}/?$rid=R[&retry-after=N]` (lowercase `retry-after`, which is all
  the SDK reads); the only subscription DPS grants is `$dps/registrations/res/#`.
- Register answers 202 `assigning` with an operation id; polls answer 202 while the allocation
  runs, then 200 with `assigned`, `failed` or `disabled` (`operation_body`); an error status carries
  `{"errorCode", "trackingId", "message", "timestampUtc"}` (`error_body`).
- DPS's memory of an assignment (`RegistrationRecord`) and of one register call (`Operation`).

Errors:

    DpsError
    └── DpsRequestError   a PUBLISH DPS cannot serve; `status` is the reply topic status,
                          `error_code` DPS's six-digit code, `rid` the request id if known
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

RESPONSE_TOPIC_FILTER = "$dps/registrations/res/#"
REGISTER_TOPIC = "$dps/registrations/PUT/iotdps-register/"
STATUS_TOPIC = "$dps/registrations/GET/iotdps-get-operationstatus/"
ERROR_BAD_REQUEST = 400001  # inference: DPS's code for a malformed device request is undocumented
ERROR_OPERATION_NOT_FOUND = 404001  # inference, as above


class DpsError(Exception):
    """Base class of every error this module raises."""


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
        raise DpsRequestError(400, ERROR_BAD_REQUEST, "Request id ($rid) is missing.", rid=rid)
    if path == REGISTER_TOPIC:
        return Register(rid=rid, payload=register_payload(payload, registration_id, rid=rid))
    if path == STATUS_TOPIC:
        operation_id = unquote(pairs.get("operationId", ""))
        if not operation_id:
            raise DpsRequestError(400, ERROR_BAD_REQUEST, "operationId is missing.", rid=rid)
        return StatusQuery(rid=rid, operation_id=operation_id)
    raise DpsRequestError(404, ERROR_OPERATION_NOT_FOUND, "Unknown DPS topic.", rid=rid)


def register_payload(payload: bytes, registration_id: str, *, rid: str | None = None) -> object:
    """The device's custom payload from a register body (MQTT or HTTPS), or DpsRequestError."""
    try:
        body = decode(payload, field="register body") if payload.strip() else {}
    except RequestError as error:
        raise DpsRequestError(400, ERROR_BAD_REQUEST, f"{error}.", rid=rid) from None
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
