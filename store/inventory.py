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
- `merged(current, other)`: two rows of one device (written under different spellings of its id
  before keys were canonical) become one: a retirement on either wins, counts add up, the newest
  provisioning, connection and identity facts win. Used by `python -m store migrate`.

No I/O, no clock.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from functools import partial

from sas.registration_id import canonical_registration_id
from store.base import DeviceChange, DeviceNotFound
from store.keys import record_digest
from store.lifecycle import LifecycleEvent, transition
from store.records import DeviceRecord, DeviceStatus, Outcome, RegistrationRecord

COUNTED_MEMORY = 16
_NEVER = datetime.min.replace(tzinfo=UTC)


def provisioned(current: DeviceRecord | None, rec: RegistrationRecord) -> DeviceRecord:
    """The row after counting an assigned registration (a record already counted changes nothing)."""
    if rec.outcome is not Outcome.ASSIGNED:
        raise ValueError(
            f"outcome: expected assigned to count a provisioning, got {rec.outcome.value}"
        )
    digest = record_digest(rec)
    if current is None:
        return DeviceRecord(
            registration_id=canonical_registration_id(rec.registration_id),
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


def merged(current: DeviceRecord | None, other: DeviceRecord) -> DeviceRecord:
    """One row for a device that has two (see the module docstring); keyed by the canonical id."""
    canonical = replace(other, registration_id=canonical_registration_id(other.registration_id))
    if current is None:
        return canonical
    rows = (current, canonical)
    provisioned_last = max(rows, key=lambda row: _instant(row.last_provisioned))
    seen_last = max(rows, key=lambda row: _instant(row.last_seen))
    identity_last = max(rows, key=lambda row: _instant(row.last_identity_event))
    retired = [row for row in rows if row.status is DeviceStatus.RETIRED]
    retirement = min(retired, key=lambda row: _instant(row.retired_at)) if retired else None
    firsts = [row.first_provisioned for row in rows if row.first_provisioned is not None]
    return replace(
        current,
        registration_id=canonical.registration_id,
        device_id=provisioned_last.device_id or current.device_id or other.device_id,
        hub=provisioned_last.hub or current.hub or other.hub,
        status=DeviceStatus.RETIRED if retirement else DeviceStatus.ACTIVE,
        retired_reason=retirement.retired_reason if retirement else None,
        retired_at=retirement.retired_at if retirement else None,
        first_provisioned=min(firsts) if firsts else None,
        last_provisioned=provisioned_last.last_provisioned,
        provisioning_count=current.provisioning_count + other.provisioning_count,
        connection_state=seen_last.connection_state,
        last_seen=seen_last.last_seen,
        last_sequence_number=seen_last.last_sequence_number,
        hub_identity=identity_last.hub_identity,
        last_identity_event=identity_last.last_identity_event,
        counted=tuple(dict.fromkeys((*current.counted, *other.counted)))[-COUNTED_MEMORY:],
    )


def _instant(value: datetime | None) -> datetime:
    return value if value is not None else _NEVER


class InventoryOps:
    """Mixin: the inventory operations of `store.base.Store`, built on the backend's `update_device`."""

    def update_device(self, registration_id: str, change: DeviceChange) -> DeviceRecord | None:
        raise NotImplementedError

    def get_device(self, registration_id: str) -> DeviceRecord | None:
        raise NotImplementedError

    def append_registration(self, rec: RegistrationRecord) -> None:
        raise NotImplementedError

    def record_registration(self, rec: RegistrationRecord) -> None:
        """Count an assignment, then log the record (a backend with transactions does both at once)."""
        if rec.outcome is Outcome.ASSIGNED:
            self.record_provisioning(rec)
        self.append_registration(rec)

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
