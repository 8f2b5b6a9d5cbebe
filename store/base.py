"""The store seam: the `Store` protocol every backend implements, and the store's errors.

Backends: `store.memory.MemoryStore` (a real in-memory implementation, for tests and local tools)
and `store.tables.TableStore` (Azure Table storage / Azurite through azure-data-tables). One
contract suite (`tests/store/test_contract.py`) runs against both.

Synchronous on purpose: a Python Functions host runs one invocation at a time, azure-data-tables'
sync client needs no extra dependency (the aio client needs aiohttp), and each call is bounded by
the SDK timeouts the Table backend is built with. A caller that wants a hard wall-clock bound on top
wraps calls with `store.deadline.call_with_deadline`, inline when the store says it bounds its own
hot-path calls by that deadline (`Store.bounds_own_calls`), else on a thread.

Error tree (every message names the field or operation; none carries a connection string or key):

    StoreError                   anything the store could not do
    ├── StoreUnavailable         the backend could not be reached or failed (connection refused, 5xx, throttled)
    │   └── StoreTimeout         ... within the configured time bound
    ├── InvalidKey (ValueError)  an id that cannot become a table key (empty, too long)
    ├── DeviceNotFound (KeyError-like, 404)   no inventory row for that registration id
    └── ConcurrencyConflict      optimistic-concurrency retries on one row were exhausted

The webhook treats any `StoreError` other than `InvalidKey` on the retired check as "check could not
be made" (fail-closed → 429 by default, see `store.settings.RetiredCheck`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from store.lifecycle import LifecycleEvent
from store.records import DeviceRecord, DeviceStatus, RegistrationRecord


class StoreError(Exception):
    """Base class: the store could not do what was asked."""

    http_status = 503


class StoreUnavailable(StoreError):
    """The backend could not be reached or answered with a server-side failure."""

    http_status = 503


class StoreTimeout(StoreUnavailable):
    """The backend did not answer within the configured bound."""

    http_status = 503


class InvalidKey(StoreError, ValueError):
    """An id cannot be used as a table key; the message names the field."""

    http_status = 400


class DeviceNotFound(StoreError):
    """No inventory row for the registration id."""

    http_status = 404

    def __init__(self, registration_id: str) -> None:
        super().__init__(f"registrationId: no device {registration_id!r} in the inventory")
        self.registration_id = registration_id


class ConcurrencyConflict(StoreError):
    """A row kept changing under us; the update was not applied."""

    http_status = 503


DeviceChange = Callable[[DeviceRecord | None], DeviceRecord | None]
"""Pure function from the current row (None if absent) to the new row (None: leave unchanged)."""


class Store(Protocol):
    """What the webhook, the lifecycle handler, the admin API and the replay command need from storage."""

    bounds_own_calls: bool
    """True when `get_device`, `append_registration` and `record_registration` bound every blocking
    step by `store.deadline.active()` themselves, so `call_with_deadline` may run them inline."""

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""

    def append_registration(self, rec: RegistrationRecord) -> None:
        """Write one registration-log record; writing the same record again changes nothing."""

    def record_registration(self, rec: RegistrationRecord) -> None:
        """What the webhook writes per call: the log record and, for an assigned one, its count in
        the inventory (`record_provisioning`), atomically where the backend can, so that a logged
        record is always counted. Idempotent, like both halves."""

    def registration_history(
        self, registration_id: str, *, limit: int = 20
    ) -> list[RegistrationRecord]:
        """Records of one registration id, newest first, at most `limit`."""

    def registrations_since(self, since: datetime, *, limit: int = 100) -> list[RegistrationRecord]:
        """Records of every device at or after `since`, newest first, at most `limit`."""

    def has_registration(self, rec: RegistrationRecord) -> bool:
        """True if exactly this record is already in the log (used by replay)."""

    def get_device(self, registration_id: str) -> DeviceRecord | None:
        """The inventory row, or None."""

    def list_devices(
        self, *, hub: str | None = None, status: DeviceStatus | None = None, limit: int = 1000
    ) -> list[DeviceRecord]:
        """Inventory rows matching every given filter, ordered by registration id."""

    def update_device(self, registration_id: str, change: DeviceChange) -> DeviceRecord | None:
        """Apply `change` atomically (optimistic concurrency, retried); return the stored row afterwards."""

    def record_provisioning(self, rec: RegistrationRecord) -> DeviceRecord:
        """Count an assigned registration in the inventory (see `store.inventory.provisioned`)."""

    def set_status(
        self, registration_id: str, status: DeviceStatus, *, reason: str | None, now: datetime
    ) -> DeviceRecord:
        """Retire or reinstate; `DeviceNotFound` if there is no row."""

    def apply_lifecycle(self, event: LifecycleEvent) -> DeviceRecord | None:
        """Apply one IoT Hub lifecycle event (see `store.lifecycle.transition`); None if nothing changed."""
