"""The DPS AllocationRequest, parsed once at the edge (``docs/protocol/webhook.md`` §2, §6).

Tolerant in: every field but ``deviceRuntimeContext.registrationId`` and ``linkedHubs`` is optional,
unknown fields are ignored, and the documented spelling variants of ``currentIotHubHostName`` are
accepted. Strict about types and sizes: a field that is present with the wrong JSON type, or
beyond a limit, is a ``RequestError`` naming it, so a malformed request is answered 400, never 5xx.

Limits, checked here before any decision work (DPS never comes near them):

    body                 at most 256 KiB of standard JSON in UTF-8, 32 levels deep
                         (``allocation.strict_json``: no NaN/Infinity, no lone surrogate)
    linkedHubs           1 to 50 host names (DPS links at most 50 hubs, limits.md §1), each at
                         most 253 characters of letters, digits, '-', '.', '_'
    registration ids     at most 128 printable characters, no whitespace (``sas.registration_id``)
    other ids            at most 128 printable characters
    payload              at most 96 KiB as compact JSON (DPS's message size, limits.md §1)

Who the device is: the individual enrollment's own ``registrationId`` when the request carries one
(DPS matched the device to that enrollment case-insensitively, so it is the identity the operator
knows and retires), else ``deviceRuntimeContext.registrationId`` as the device sent it. Either must
pass ``sas.registration_id.registration_id_problem`` (at most 128 printable characters, no
whitespace); the store and the policy compare it in its canonical form.

Key material never reaches these values: DPS strips it, and we do not keep the attestation objects.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from allocation import strict_json
from allocation.errors import RequestError
from sas.registration_id import registration_id_problem

MAX_LINKED_HUBS = 50
MAX_HOST_NAME_CHARS = 253
MAX_ID_CHARS = 128
MAX_PAYLOAD_BYTES = 96 * 1024
_HOST_NAME = re.compile(r"[A-Za-z0-9._-]+")
_HOST_NAMES = re.compile(r"[A-Za-z0-9._-]{1,253}(?:\n[A-Za-z0-9._-]{1,253})*")
_HOST_NAME_EXPECTED = (
    f"a hub host name: 1 to {MAX_HOST_NAME_CHARS} letters, digits, '-', '.' or '_'"
)

# Spellings seen in Microsoft's docs tables and prose; the JSON samples use the first.
_CURRENT_HUB_FIELDS = ("currentIotHubHostName", "currentIoTHubHostName", "currentIoTHubHostname")


class EnrollmentKind(enum.StrEnum):
    """Which kind of enrollment a registration came through (the registration log keeps it too)."""

    GROUP = "group"
    INDIVIDUAL = "individual"
    UNKNOWN = "unknown"


@dataclass(frozen=True, kw_only=True)
class ReprovisionPolicy:
    update_hub_assignment: bool
    migrate_device_data: bool


@dataclass(frozen=True, kw_only=True)
class AllocationRequest:
    """What the webhook needs to decide, from one AllocationRequest."""

    registration_id: str  # the individual enrollment's own id if there is one, else the device's
    linked_hubs: tuple[str, ...]
    enrollment_kind: EnrollmentKind = EnrollmentKind.UNKNOWN
    enrollment_group_id: str | None = None
    current_hub: str | None = None
    current_device_id: str | None = None
    enrollment_device_id: str | None = None  # individualEnrollment.deviceId: the hub device id
    sent_registration_id: str | None = None  # what the device sent, when not registration_id
    payload: Any = None  # any JSON value the device sent; None when absent or null
    payload_size: int = 0  # bytes of the payload as compact UTF-8 JSON (0 when absent)
    reprovision_policy: ReprovisionPolicy | None = None

    @property
    def is_reprovisioning(self) -> bool:
        """DPS documents the presence of the current hub as the mark of a re-registration."""
        return self.current_hub is not None

    @property
    def device_id(self) -> str:
        """The hub device id: the current one on a re-registration, else the enrollment's, else
        the registration id (what DPS uses when the enrollment names none)."""
        return self.current_device_id or self.enrollment_device_id or self.registration_id


def parse_request_body(body: bytes) -> AllocationRequest:
    """Decode an HTTP body strictly and parse it; any problem is a ``RequestError``."""
    return parse_request(strict_json.decode(body))


def parse_request(document: object) -> AllocationRequest:
    """Parse a decoded AllocationRequest document."""
    root = _object(document, "body")
    context = _object(root.get("deviceRuntimeContext"), "deviceRuntimeContext")
    sent_id = _registration_id(context, "deviceRuntimeContext.registrationId")
    linked_hubs = _linked_hubs(root.get("linkedHubs"))

    kind, group_id = EnrollmentKind.UNKNOWN, None
    registration_id, enrollment_device_id = sent_id, None
    policy_document: Mapping[str, Any] | None = None
    if (group := root.get("enrollmentGroup")) is not None:
        group = _object(group, "enrollmentGroup")
        kind = EnrollmentKind.GROUP
        group_id = _optional_string(group, "enrollmentGroupId", "enrollmentGroup.enrollmentGroupId")
        policy_document = group
        policy_field = "enrollmentGroup.reprovisionPolicy"
    elif (individual := root.get("individualEnrollment")) is not None:
        policy_document = _object(individual, "individualEnrollment")
        kind = EnrollmentKind.INDIVIDUAL
        policy_field = "individualEnrollment.reprovisionPolicy"
        if policy_document.get("registrationId") is not None:
            registration_id = _registration_id(
                policy_document, "individualEnrollment.registrationId"
            )
        enrollment_device_id = _optional_string(
            policy_document, "deviceId", "individualEnrollment.deviceId"
        )

    current_hub = None
    for name in _CURRENT_HUB_FIELDS:
        current_hub = _optional_host(context, name, f"deviceRuntimeContext.{name}")
        if current_hub is not None:
            break
    payload = context.get("payload")
    payload_size = _payload_size(payload)

    return AllocationRequest(
        registration_id=registration_id,
        linked_hubs=linked_hubs,
        enrollment_kind=kind,
        enrollment_group_id=group_id,
        current_hub=current_hub or None,
        current_device_id=_optional_string(
            context, "currentDeviceId", "deviceRuntimeContext.currentDeviceId"
        )
        or None,
        enrollment_device_id=enrollment_device_id or None,
        sent_registration_id=sent_id if sent_id != registration_id else None,
        payload=payload,
        payload_size=payload_size,
        reprovision_policy=(
            _reprovision_policy(policy_document.get("reprovisionPolicy"), policy_field)
            if policy_document is not None
            else None
        ),
    )


def _object(value: object, field: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise RequestError(field, f"a JSON object, got {_json_type(value)}")
    return value


def _required_string(document: Mapping[str, Any], key: str, field: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RequestError(field, f"a non-empty string, got {_json_type(value)}")
    return value


def _registration_id(document: Mapping[str, Any], field: str) -> str:
    value = _required_string(document, "registrationId", field)
    problem = registration_id_problem(value)
    if problem is not None:
        raise RequestError(field, problem)
    return value


def _optional_string(document: Mapping[str, Any], key: str, field: str) -> str | None:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestError(field, f"a string, got {_json_type(value)}")
    if len(value) > MAX_ID_CHARS or not value.isprintable():
        raise RequestError(field, f"at most {MAX_ID_CHARS} printable characters")
    return value


def _optional_host(document: Mapping[str, Any], key: str, field: str) -> str | None:
    value = document.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RequestError(field, f"a hub host name, got {_json_type(value)}")
    if not _is_host_name(value):
        raise RequestError(field, _HOST_NAME_EXPECTED)
    return value


def _linked_hubs(value: object) -> tuple[str, ...]:
    expected = f"an array of 1 to {MAX_LINKED_HUBS} hub host names"
    if not isinstance(value, list):
        raise RequestError("linkedHubs", f"{expected}, got {_json_type(value)}")
    if not value or len(value) > MAX_LINKED_HUBS:
        raise RequestError("linkedHubs", f"{expected}, got {len(value)}")
    # One regex over all of them is the fast path (this runs on every request); the loop below
    # only names the first bad one.
    if all(type(hub) is str for hub in value):
        joined = "\n".join(value)
        if joined.count("\n") == len(value) - 1 and _HOST_NAMES.fullmatch(joined):
            return tuple(value)
    for index, hub in enumerate(value):
        if not isinstance(hub, str) or not hub.strip():
            raise RequestError(f"linkedHubs[{index}]", f"a hub host name, got {_json_type(hub)}")
        if not _is_host_name(hub):
            raise RequestError(f"linkedHubs[{index}]", _HOST_NAME_EXPECTED)
    return tuple(value)


def _is_host_name(value: str) -> bool:
    return len(value) <= MAX_HOST_NAME_CHARS and _HOST_NAME.fullmatch(value) is not None


def _payload_size(payload: object) -> int:
    if payload is None:
        return 0
    size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > MAX_PAYLOAD_BYTES:
        raise RequestError(
            "deviceRuntimeContext.payload", f"at most {MAX_PAYLOAD_BYTES} bytes, got {size}"
        )
    return size


def _reprovision_policy(value: object, field: str) -> ReprovisionPolicy | None:
    if value is None:
        return None
    document = _object(value, field)
    flags = {}
    for key in ("updateHubAssignment", "migrateDeviceData"):
        flag = document.get(key, True)  # both default to true (webhook.md §2.2)
        if not isinstance(flag, bool):
            raise RequestError(f"{field}.{key}", f"true or false, got {_json_type(flag)}")
        flags[key] = flag
    return ReprovisionPolicy(
        update_hub_assignment=flags["updateHubAssignment"],
        migrate_device_data=flags["migrateDeviceData"],
    )


def _json_type(value: object) -> str:
    """Name a value's JSON type without quoting the value (it may be secret)."""
    if value is None:
        return "nothing (missing or null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "an empty string" if not value.strip() else "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
