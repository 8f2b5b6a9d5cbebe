"""Which hub: DPS's native allocation and the custom-allocation webhook's contract. Pure.

- `static` is the one linked hub; `hashed` a stable hash of the lower-cased registration id over
  the linked hubs; under the `never` re-provisioning policy the linked hubs are the current hub
  only (`linked_hubs`), and a webhook's choice of hub is not applied (`pinned`): DPS "calls the
  webhook in case there's new ReturnData, but the device doesn't change its assigned hub"
  (docs/protocol/webhook.md §5).
- `custom` calls the webhook with an AllocationRequest (`allocation_request`: key material stripped,
  the webhook URL's query masked as `?****`; docs/protocol/webhook.md §2) and maps its answer as DPS
  documents (§4):

      200 + hub in linkedHubs         -> assigned (its initialTwin and payload honoured)
      200 + hub "" / null / absent    -> failed 400208
      200 + hub not in linkedHubs     -> failed 400207 (undocumented; inference); under
                                         `never` (`pinned`) any hub: the device keeps its hub
      200 + unreadable body           -> failed 400207
      401                             -> failed 400209
      429, 5xx, unreachable           -> retried after 1, 10, 19, ... 82 s (ten retries), then 400207
      anything else                   -> failed 400207 "Custom allocation failed with status code: N"
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from devtools.urls import mask_url
from emulator.dps.auth import Registrant
from emulator.dps.codes import DpsErrorCode
from emulator.dps.enrollments import Allocation, Enrollment, EnrollmentGroup, Reprovision
from emulator.dps.wire import RegistrationRecord
from emulator.hub.twin import InitialTwin, TwinError

ALLOCATION_API_VERSION = "2021-10-01"
WEBHOOK_RETRIES = 10
WEBHOOK_FIRST_DELAY = 1.0
WEBHOOK_DELAY_INCREMENT = 9.0
ERROR_CUSTOM_ALLOCATION_FAILED = DpsErrorCode.CUSTOM_ALLOCATION_FAILED
ERROR_HUB_NOT_SPECIFIED = DpsErrorCode.CUSTOM_ALLOCATION_HUB_NOT_SPECIFIED
ERROR_WEBHOOK_UNAUTHORIZED = DpsErrorCode.CUSTOM_ALLOCATION_UNAUTHORIZED


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
        return Failed(DpsErrorCode.ARGUMENT_INVALID, "No IoT hub is linked to the enrollment.")
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


def webhook_outcome(
    status: int, body: bytes, linked: Sequence[str], *, pinned: str | None = None
) -> WebhookOutcome:
    """Map one webhook HTTP answer to DPS's outcome (table in the module docstring).

    `pinned` is the device's current hub when the `never` policy keeps it there: the answer must
    still be a valid one (a hub named, a readable initialTwin), but whichever hub it names, the
    outcome is `pinned`.
    """
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
    if isinstance(hub, str) and pinned is not None:
        by_name = {hub.lower(): pinned}
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
