"""What a successful assignment does to the hubs, by the enrollment's re-provisioning policy. Pure.

    policy   hub re-evaluated  device data            substatus (hub changed / same hub)
    migrate  yes               twin moves with it     deviceDataMigrated / reprovisionedToInitialAssignment
    reset    yes               initial twin again     deviceDataReset / reprovisionedToInitialAssignment
    never    no (webhook still called with linkedHubs = [current hub]; whatever hub it names,
             the device stays: `allocation.webhook_outcome(pinned=...)`)
                               kept                   - / reprovisionedToInitialAssignment

The initial twin is the webhook's `initialTwin`, else the enrollment's. Under `reset` it replaces
the device's twin on every re-registration, the hub changed or not: Microsoft's reprovisioning
concepts page calls that policy "often used for a factory reset without changing IoT hubs", and
the custom-allocation page applies a webhook's initialTwin "when re-provisioning with reset to
initial config" (docs/protocol/webhook.md §5). When the hub changes the device is removed from the
old hub.

Substatus: the REST spec defines `deviceDataMigrated` and `deviceDataReset` as "assigned to a
*different* IoT hub" and `reprovisionedToInitialAssignment` as "re-provisioned to a previously
assigned IoT hub", so a re-registration that stays on its hub gets the latter under every policy
(the same-hub substatus is not otherwise documented: this reading of the spec is the emulator's
choice). A disabled enrollment never gets here: its registrations end `disabled`, no hub touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from emulator.dps.allocation import Assigned
from emulator.dps.auth import Registrant
from emulator.dps.enrollments import Reprovision
from emulator.dps.wire import RegistrationRecord, Substatus, format_dps_timestamp
from emulator.hub.twin import InitialTwin


class TwinSource(Enum):
    """Where the device's twin comes from when DPS upserts it."""

    KEEP = "keep"  # leave the hub's twin alone
    MIGRATE = "migrate"  # copy the twin from `HubPlan.delete_from` (the old hub)
    INITIAL = "initial"  # a fresh twin from `HubPlan.initial_twin`


@dataclass(frozen=True, kw_only=True)
class HubPlan:
    """What DPS does to the hubs for one successful assignment."""

    hub: str
    device_id: str
    twin_source: TwinSource
    initial_twin: InitialTwin | None
    delete_from: str | None


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
        reset = enrollment.reprovision is Reprovision.RESET
        source = TwinSource.INITIAL if reset else TwinSource.MIGRATE if moved else TwinSource.KEEP
        if not moved:
            substatus = Substatus.REPROVISIONED_TO_INITIAL_ASSIGNMENT
        elif reset:
            substatus = Substatus.DEVICE_DATA_RESET
        else:
            substatus = Substatus.DEVICE_DATA_MIGRATED
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
