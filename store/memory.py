"""`MemoryStore`: the in-memory twin of `store.tables.TableStore`, a real implementation of `store.base.Store`.

Keeps the same keys as the Table backend (`store.keys`), so ordering, idempotence and key validation
behave the same; the contract suite runs against both. A lock makes `update_device` atomic across
threads. Nothing persists. `fail_with` lets a test make every call raise a given `StoreError` (an
outage) without a network.
"""

from __future__ import annotations

import threading
from datetime import datetime

from store import keys
from store.base import DeviceChange, StoreError
from store.inventory import InventoryOps, provisioned
from store.records import DeviceRecord, DeviceStatus, Outcome, RegistrationRecord


class MemoryStore(InventoryOps):
    """Dict-backed store with Table-storage key semantics."""

    # Its calls never block, but they run on the deadline's thread like any store that does not
    # bound its own calls: the webhook bench's baseline is measured as it always was.
    bounds_own_calls = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log: dict[tuple[str, str], RegistrationRecord] = {}
        self._devices: dict[str, DeviceRecord] = {}
        self.fail_with: StoreError | None = None

    def close(self) -> None:
        """Nothing to release."""

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def append_registration(self, rec: RegistrationRecord) -> None:
        """Write one registration-log record (idempotent)."""
        self._check()
        pk = keys.registration_partition_key(rec.registration_id)
        rk = keys.registration_row_key(rec)
        with self._lock:
            self._log[(pk, rk)] = rec

    def record_registration(self, rec: RegistrationRecord) -> None:
        """The log record and, for an assignment, its count in the inventory, atomically."""
        self._check()
        pk = keys.registration_partition_key(rec.registration_id)
        rk = keys.registration_row_key(rec)
        with self._lock:
            if rec.outcome is Outcome.ASSIGNED:
                self._devices[pk] = provisioned(self._devices.get(pk), rec)
            self._log[(pk, rk)] = rec

    def has_registration(self, rec: RegistrationRecord) -> bool:
        """True if exactly this record is already in the log."""
        self._check()
        pk = keys.registration_partition_key(rec.registration_id)
        return (pk, keys.registration_row_key(rec)) in self._log

    def registration_history(
        self, registration_id: str, *, limit: int = 20
    ) -> list[RegistrationRecord]:
        """Records of one registration id, newest first."""
        self._check()
        pk = keys.registration_partition_key(registration_id)
        with self._lock:
            rows = sorted((k, v) for k, v in self._log.items() if k[0] == pk)
        return [rec for _, rec in rows[:limit]]

    def registrations_since(self, since: datetime, *, limit: int = 100) -> list[RegistrationRecord]:
        """Records at or after `since`, newest first."""
        self._check()
        bound = keys.since_row_key(since)
        with self._lock:
            rows = sorted((rk, rec) for (_, rk), rec in self._log.items() if rk <= bound)
        return [rec for _, rec in rows[:limit]]

    def get_device(self, registration_id: str) -> DeviceRecord | None:
        """The inventory row, or None."""
        self._check()
        pk = keys.registration_partition_key(registration_id)
        with self._lock:
            return self._devices.get(pk)

    def list_devices(
        self, *, hub: str | None = None, status: DeviceStatus | None = None, limit: int = 1000
    ) -> list[DeviceRecord]:
        """Rows matching every given filter, ordered by key."""
        self._check()
        with self._lock:
            rows = sorted(self._devices.items())
        return [
            dev
            for _, dev in rows
            if (hub is None or dev.hub == hub) and (status is None or dev.status is status)
        ][:limit]

    def update_device(self, registration_id: str, change: DeviceChange) -> DeviceRecord | None:
        """Apply `change` atomically under the lock."""
        self._check()
        pk = keys.registration_partition_key(registration_id)
        with self._lock:
            current = self._devices.get(pk)
            new = change(current)
            if new is None:
                return current
            self._devices[pk] = new
            return new
