"""The two values the store keeps: one registration-log record per webhook call, one inventory row per device.

Both are frozen dataclasses with a plain-dict form (`to_dict` / `*_from_dict`) that is JSON-safe:
datetimes are ISO-8601 UTC strings, enums their values, tuples lists. That dict is what the Table
adapter stores as entity properties and what a replay line carries (see `store.replay`), so one
conversion serves both.

What a record must never hold: payload *values*, keys, SAS tokens or connection strings. The payload
is summarised by `summarize_payload` into its size and its top-level key names only.

This module does no I/O and reads no clock: every time is passed in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from allocation.request import EnrollmentKind

MAX_PAYLOAD_KEYS = 32
MAX_PAYLOAD_KEY_CHARS = 64


_E = TypeVar("_E", bound=StrEnum)


class RecordError(ValueError):
    """A record or its dict form is malformed; the message names the field and what was expected."""


class Outcome(StrEnum):
    """What the webhook answered."""

    ASSIGNED = "assigned"
    DENIED = "denied"
    INVALID_REQUEST = "invalid_request"
    RETRY_LATER = "retry_later"  # 429: a check could not be made, DPS retries


class DeviceStatus(StrEnum):
    """Administrative status: a retired device is denied by the webhook."""

    ACTIVE = "active"
    RETIRED = "retired"


class ConnectionState(StrEnum):
    """Connection state as last reported by a lifecycle event."""

    UNKNOWN = "unknown"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


class HubIdentity(StrEnum):
    """Whether the device's identity exists in its current hub, as lifecycle events last said."""

    UNKNOWN = "unknown"
    PRESENT = "present"
    DELETED = "deleted"


@dataclass(frozen=True, kw_only=True)
class RegistrationRecord:
    """One webhook call: who asked, what was decided, and how long the decision took."""

    time: datetime
    registration_id: str  # as the enrollment or the device spelt it; keys use its canonical form
    device_id: str | None = None
    enrollment_kind: EnrollmentKind = EnrollmentKind.UNKNOWN
    enrollment_id: str | None = None  # group id, or the individual enrollment's registration id
    outcome: Outcome
    hub: str | None = None
    rule: str | None = None
    strategy: str | None = None
    reprovision: bool = False
    previous_hub: str | None = None
    payload_size: int = 0
    payload_keys: tuple[str, ...] = ()
    decision_ms: float = 0.0
    reason: str | None = None  # denial or invalid-request message, never a secret
    sent_registration_id: str | None = None  # what the device sent, when not registration_id

    def __post_init__(self) -> None:
        _require_utc("time", self.time)
        if not isinstance(self.registration_id, str) or not self.registration_id:
            raise RecordError("registration_id: expected a non-empty string")
        if self.payload_size < 0:
            raise RecordError(f"payload_size: expected >= 0, got {self.payload_size}")
        if self.decision_ms < 0:
            raise RecordError(f"decision_ms: expected >= 0, got {self.decision_ms}")
        if not isinstance(self.payload_keys, tuple):
            raise RecordError("payload_keys: expected a tuple of strings")


@dataclass(frozen=True, kw_only=True)
class DeviceRecord:
    """The inventory row of one device, keyed by registration id."""

    registration_id: str
    device_id: str | None = None
    hub: str | None = None
    status: DeviceStatus = DeviceStatus.ACTIVE
    first_provisioned: datetime | None = None
    last_provisioned: datetime | None = None
    provisioning_count: int = 0
    connection_state: ConnectionState = ConnectionState.UNKNOWN
    last_seen: datetime | None = None
    last_sequence_number: str | None = None  # highest connection-event sequenceNumber applied
    hub_identity: HubIdentity = HubIdentity.UNKNOWN
    last_identity_event: datetime | None = None  # eventTime of the newest Created/Deleted applied
    retired_reason: str | None = None
    retired_at: datetime | None = None
    counted: tuple[str, ...] = ()  # digests of the latest counted registrations, for idempotence

    def __post_init__(self) -> None:
        if not isinstance(self.registration_id, str) or not self.registration_id:
            raise RecordError("registration_id: expected a non-empty string")
        if not isinstance(self.counted, tuple):
            raise RecordError("counted: expected a tuple of strings")
        for name in (
            "first_provisioned",
            "last_provisioned",
            "last_seen",
            "last_identity_event",
            "retired_at",
        ):
            value = getattr(self, name)
            if value is not None:
                _require_utc(name, value)
        if self.provisioning_count < 0:
            raise RecordError(f"provisioning_count: expected >= 0, got {self.provisioning_count}")


def summarize_payload(payload: object, *, size: int | None = None) -> tuple[int, tuple[str, ...]]:
    """Size in bytes of the payload's compact JSON (``size`` when the caller measured it already)
    and its top-level key names (capped), never its values."""
    if payload is None:
        return 0, ()
    if size is None:
        size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if not isinstance(payload, Mapping):
        return size, ()
    names = sorted(str(k)[:MAX_PAYLOAD_KEY_CHARS] for k in payload)
    return size, tuple(names[:MAX_PAYLOAD_KEYS])


# -- dict form ---------------------------------------------------------------------------------------------------


def registration_to_dict(rec: RegistrationRecord) -> dict[str, Any]:
    """JSON-safe dict of a registration record (the replay-line and entity form)."""
    return {
        "time": _dt_out(rec.time),
        "registration_id": rec.registration_id,
        "device_id": rec.device_id,
        "enrollment_kind": rec.enrollment_kind.value,
        "enrollment_id": rec.enrollment_id,
        "outcome": rec.outcome.value,
        "hub": rec.hub,
        "rule": rec.rule,
        "strategy": rec.strategy,
        "reprovision": rec.reprovision,
        "previous_hub": rec.previous_hub,
        "payload_size": rec.payload_size,
        "payload_keys": list(rec.payload_keys),
        "decision_ms": rec.decision_ms,
        "reason": rec.reason,
        # Only when set: the dict of a record without it, and so its digest, stays as it was.
        **({"sent_registration_id": rec.sent_registration_id} if rec.sent_registration_id else {}),
    }


def registration_from_dict(data: Mapping[str, Any]) -> RegistrationRecord:
    """Parse the dict form back; missing optional fields default, bad ones raise `RecordError` naming the field."""
    keys = data.get("payload_keys", [])
    if isinstance(keys, str):  # the Table adapter stores the list as a JSON string
        keys = _json_list("payload_keys", keys)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise RecordError("payload_keys: expected a list of strings")
    return RegistrationRecord(
        time=_dt_in("time", data.get("time"), required=True),  # type: ignore[arg-type]
        registration_id=_str("registration_id", data.get("registration_id"), required=True),  # type: ignore[arg-type]
        device_id=_str("device_id", data.get("device_id")),
        enrollment_kind=_enum(
            EnrollmentKind, "enrollment_kind", data.get("enrollment_kind", "unknown")
        ),
        enrollment_id=_str("enrollment_id", data.get("enrollment_id")),
        outcome=_enum(Outcome, "outcome", data.get("outcome")),
        hub=_str("hub", data.get("hub")),
        rule=_str("rule", data.get("rule")),
        strategy=_str("strategy", data.get("strategy")),
        reprovision=_bool("reprovision", data.get("reprovision", False)),
        previous_hub=_str("previous_hub", data.get("previous_hub")),
        payload_size=_int("payload_size", data.get("payload_size", 0)),
        payload_keys=tuple(keys),
        decision_ms=_float("decision_ms", data.get("decision_ms", 0.0)),
        reason=_str("reason", data.get("reason")),
        sent_registration_id=_str("sent_registration_id", data.get("sent_registration_id")) or None,
    )


def device_to_dict(dev: DeviceRecord) -> dict[str, Any]:
    """JSON-safe dict of an inventory row (the entity and admin-API form)."""
    return {
        "registration_id": dev.registration_id,
        "device_id": dev.device_id,
        "hub": dev.hub,
        "status": dev.status.value,
        "first_provisioned": _dt_out(dev.first_provisioned),
        "last_provisioned": _dt_out(dev.last_provisioned),
        "provisioning_count": dev.provisioning_count,
        "connection_state": dev.connection_state.value,
        "last_seen": _dt_out(dev.last_seen),
        "last_sequence_number": dev.last_sequence_number,
        "hub_identity": dev.hub_identity.value,
        "last_identity_event": _dt_out(dev.last_identity_event),
        "retired_reason": dev.retired_reason,
        "retired_at": _dt_out(dev.retired_at),
        "counted": " ".join(dev.counted),
    }


def device_from_dict(data: Mapping[str, Any]) -> DeviceRecord:
    """Parse an inventory dict back; bad fields raise `RecordError` naming the field."""
    return DeviceRecord(
        registration_id=_str("registration_id", data.get("registration_id"), required=True),  # type: ignore[arg-type]
        device_id=_str("device_id", data.get("device_id")),
        hub=_str("hub", data.get("hub")),
        status=_enum(DeviceStatus, "status", data.get("status", "active")),
        first_provisioned=_dt_in("first_provisioned", data.get("first_provisioned")),
        last_provisioned=_dt_in("last_provisioned", data.get("last_provisioned")),
        provisioning_count=_int("provisioning_count", data.get("provisioning_count", 0)),
        connection_state=_enum(
            ConnectionState, "connection_state", data.get("connection_state", "unknown")
        ),
        last_seen=_dt_in("last_seen", data.get("last_seen")),
        last_sequence_number=_str("last_sequence_number", data.get("last_sequence_number")),
        hub_identity=_enum(HubIdentity, "hub_identity", data.get("hub_identity", "unknown")),
        last_identity_event=_dt_in("last_identity_event", data.get("last_identity_event")),
        retired_reason=_str("retired_reason", data.get("retired_reason")),
        retired_at=_dt_in("retired_at", data.get("retired_at")),
        counted=tuple((_str("counted", data.get("counted")) or "").split()),
    )


# -- field helpers -----------------------------------------------------------------------------------------------


def _require_utc(name: str, value: object) -> None:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise RecordError(f"{name}: expected a timezone-aware datetime, got {value!r}")
    if value.utcoffset() != UTC.utcoffset(None):
        raise RecordError(f"{name}: expected a UTC datetime, got offset {value.utcoffset()}")


def _dt_out(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat(timespec="microseconds")


def _dt_in(name: str, value: object, *, required: bool = False) -> datetime | None:
    if value is None:
        if required:
            raise RecordError(f"{name}: required, expected an ISO-8601 UTC time")
        return None
    if not isinstance(value, str):
        raise RecordError(f"{name}: expected an ISO-8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise RecordError(f"{name}: expected an ISO-8601 time, got {value!r}") from None
    if parsed.utcoffset() is None:
        raise RecordError(f"{name}: expected a UTC offset in {value!r}")
    return parsed.astimezone(UTC)


def _str(name: str, value: object, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise RecordError(f"{name}: required, expected a string")
        return None
    if not isinstance(value, str):
        raise RecordError(f"{name}: expected a string, got {type(value).__name__}")
    return value


def _int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(f"{name}: expected an integer, got {type(value).__name__}")
    return value


def _float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"{name}: expected a number, got {type(value).__name__}")
    return float(value)


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise RecordError(f"{name}: expected true or false, got {type(value).__name__}")
    return value


def _enum(cls: type[_E], name: str, value: object) -> _E:
    try:
        if not isinstance(value, str):
            raise ValueError(name)
        return cls(value)
    except ValueError:
        allowed = " | ".join(m.value for m in cls)
        raise RecordError(f"{name}: expected one of {allowed}, got {value!r}") from None


def _json_list(name: str, text: str) -> list[Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise RecordError(f"{name}: expected a JSON list") from None
    if not isinstance(value, list):
        raise RecordError(f"{name}: expected a JSON list")
    return value
