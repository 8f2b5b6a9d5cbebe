"""Inventory transitions for provisioning and retire/reinstate, and the mixin that gives every backend the same
`record_provisioning` / `set_status` / `apply_lifecycle` on top of its `update_device`.

Rules (pure functions of the current row):

- `provisioned(current, rec)`: an *assigned* record counts once. A record newer than
  `last_provisioned` bumps `provisioning_count`, sets hub, device id and `last_provisioned`; a
  record at or before `last_provisioned` only widens `first_provisioned` (a replayed or redelivered
  record never counts twice; a replay that arrives after a newer live registration is not counted:
  idempotence wins over an exact count). A retired device keeps its status.
- `with_status(current, status, reason, now)`: retire records reason and time; reinstate clears
  both. No row → `DeviceNotFound`.

No I/O, no clock.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from functools import partial

from store.base import DeviceChange, DeviceNotFound
from store.keys import record_digest
from store.lifecycle import LifecycleEvent, transition
from store.records import DeviceRecord, DeviceStatus, Outcome, RegistrationRecord

COUNTED_MEMORY = 16


def provisioned(current: DeviceRecord | None, rec: RegistrationRecord) -> DeviceRecord:
    """The row after counting an assigned registration (a record already counted changes nothing)."""
    if rec.outcome is not Outcome.ASSIGNED:
        raise ValueError(
            f"outcome: expected assigned to count a provisioning, got {rec.outcome.value}"
        )
    digest = record_digest(rec)
    if current is None:
        return DeviceRecord(
            registration_id=rec.registration_id,
            device_id=rec.device_id,
            hub=rec.hub,
            first_provisioned=rec.time,
            last_provisioned=rec.time,
            provisioning_count=1,
            counted=(digest,),
        )
    if digest in current.counted:
        return current
    first = current.first_provisioned
    last = current.last_provisioned
    newest = last is None or rec.time >= last
    return replace(
        current,
        device_id=(rec.device_id or current.device_id) if newest else current.device_id,
        hub=rec.hub if newest else current.hub,
        first_provisioned=rec.time if first is None or rec.time < first else first,
        last_provisioned=rec.time if newest else last,
        provisioning_count=current.provisioning_count + 1,
        counted=(*current.counted, digest)[-COUNTED_MEMORY:],
    )


def with_status(
    current: DeviceRecord | None,
    registration_id: str,
    status: DeviceStatus,
    reason: str | None,
    now: datetime,
) -> DeviceRecord:
    """The row after retire (reason and time recorded) or reinstate (both cleared)."""
    if current is None:
        raise DeviceNotFound(registration_id)
    if status is DeviceStatus.RETIRED:
        if current.status is DeviceStatus.RETIRED and current.retired_reason == reason:
            return current  # retiring twice keeps the first retirement time
        return replace(current, status=status, retired_reason=reason, retired_at=now)
    return replace(current, status=status, retired_reason=None, retired_at=None)


class InventoryOps:
    """Mixin: the inventory operations of `store.base.Store`, built on the backend's `update_device`."""

    def update_device(self, registration_id: str, change: DeviceChange) -> DeviceRecord | None:
        raise NotImplementedError

    def get_device(self, registration_id: str) -> DeviceRecord | None:
        raise NotImplementedError

    def record_provisioning(self, rec: RegistrationRecord) -> DeviceRecord:
        """Count an assigned registration in the inventory (see `provisioned`)."""
        row = self.update_device(rec.registration_id, partial(provisioned, rec=rec))
        assert row is not None  # noqa: S101 -- provisioned() always returns a row
        return row

    def set_status(
        self, registration_id: str, status: DeviceStatus, *, reason: str | None, now: datetime
    ) -> DeviceRecord:
        """Retire or reinstate; `DeviceNotFound` if there is no row."""
        change = partial(
            with_status, registration_id=registration_id, status=status, reason=reason, now=now
        )
        row = self.update_device(registration_id, change)
        assert row is not None  # noqa: S101 -- with_status() raises or returns a row
        return row

    def apply_lifecycle(self, event: LifecycleEvent) -> DeviceRecord | None:
        """Apply one lifecycle event; None when it changed nothing."""
        changed: list[DeviceRecord] = []

        def change(current: DeviceRecord | None) -> DeviceRecord | None:
            changed.clear()
            new = transition(current, event)
            if new is not None:
                changed.append(new)
            return new

        self.update_device(event.device_id, change)
        return changed[0] if changed else None
