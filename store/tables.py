"""`TableStore`: `store.base.Store` on Azure Table storage (or Azurite) through azure-data-tables.

A shell: records become entities (`store.records` dict form plus `PartitionKey`/`RowKey` from
`store.keys`), SDK errors become the store's errors, and nothing here decides anything.

- One `TableClient` per table, built once from the caller's connection string (never read from the
  environment here) and reused. Each table is created on first use, once per store instance
  (`create_table`, 409 = exists).
- Every call is bounded: `connection_timeout` and `read_timeout` equal the configured timeout and
  `retry_total=0`, so a call makes one attempt and fails after at most connect + read timeout. (DPS
  retries the webhook on 429; a second attempt here would only spend the webhook's time budget.)
- Inventory updates use optimistic concurrency: read with etag, apply the pure change, write with
  `IfNotModified` (or create, which fails if someone else created first); on conflict re-read and
  re-apply, up to `MAX_UPDATE_ATTEMPTS` times → `ConcurrencyConflict`. Two concurrent provisionings
  never lose a count.
- Cost per call (``bench/webhook_bench.py``): each HTTP request through azure-core costs about a
  millisecond of CPU, so requests are saved where correctness allows. One ``requests.Session`` is
  shared by the three tables, and when no proxy is configured in the environment it does not
  re-read the environment for proxy settings on every request (``trust_env``: half a millisecond
  per request on a host with a large environment). The last inventory row read (with its etag) is
  remembered per registration id, so the webhook's retired check and its inventory update that
  follows make one read, not two; the etag still guards the write, and a stale memory only costs
  the re-read that would have happened anyway.
- Error mapping: connection failures, 408/429/5xx and authentication failures → `StoreUnavailable`;
  connect or read timeouts → `StoreTimeout`; anything else from the SDK → `StoreError`. Messages
  carry the operation, the exception type and the status code, never the SDK's message (it can
  contain a SAS-signed URL).
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from itertools import islice
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableClient, TableEntity, UpdateMode

from store import keys
from store.base import (
    ConcurrencyConflict,
    DeviceChange,
    InvalidKey,
    StoreError,
    StoreTimeout,
    StoreUnavailable,
)
from store.inventory import InventoryOps, merged
from store.logline import Quoted
from store.records import (
    DeviceRecord,
    DeviceStatus,
    RecordError,
    RegistrationRecord,
    device_from_dict,
    device_to_dict,
    registration_from_dict,
    registration_to_dict,
)
from store.settings import StoreSettings

log = logging.getLogger(__name__)

MAX_UPDATE_ATTEMPTS = 12
CONFLICT_BACKOFF_SECONDS = 0.01
_RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
_REMEMBERED_ROWS = 1024
_ABSENT = object()  # remembered: the row did not exist when last read


class TableStore(InventoryOps):
    """Registration log, by-hour index and device inventory in three tables."""

    def __init__(
        self, connection_string: str, *, table_prefix: str = "dps", timeout_seconds: float = 2.0
    ):
        self._timeout = timeout_seconds
        import requests  # noqa: PLC0415 -- azure-core's transport already depends on it

        self._session = requests.Session()
        # Without a proxy in the environment, skip requests' per-request environment scan.
        self._session.trust_env = any(name.lower() in _PROXY_VARIABLES for name in os.environ)
        self._transport = RequestsTransport(
            session=self._session,
            session_owner=False,
            connection_timeout=timeout_seconds,
            read_timeout=timeout_seconds,
        )
        self._rows: OrderedDict[str, object] = OrderedDict()
        self._rows_lock = threading.Lock()
        options: dict[str, Any] = {
            "transport": self._transport,
            "connection_timeout": timeout_seconds,
            "read_timeout": timeout_seconds,
            "retry_total": 0,
            "retry_connect": 0,
            "retry_read": 0,
            "retry_status": 0,
        }
        names = {
            "log": f"{table_prefix}Registrations",
            "hour": f"{table_prefix}RegistrationsByHour",
            "devices": f"{table_prefix}Devices",
        }
        try:
            self._clients = {
                role: TableClient.from_connection_string(connection_string, name, **options)
                for role, name in names.items()
            }
        except ValueError:
            raise StoreError(
                "AzureWebJobsStorage: not a usable storage connection string"
            ) from None
        self._ready: set[str] = set()

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> TableStore:
        """Build from validated settings (`SettingsError` if there is no connection string)."""
        return cls(
            settings.require_connection_string(),
            table_prefix=settings.table_prefix,
            timeout_seconds=settings.timeout_seconds,
        )

    def close(self) -> None:
        """Close the HTTP sessions."""
        for client in self._clients.values():
            client.close()
        self._session.close()

    def _remember(self, pk: str, entity: TableEntity | None) -> None:
        with self._rows_lock:
            self._rows[pk] = _ABSENT if entity is None else entity
            self._rows.move_to_end(pk)
            while len(self._rows) > _REMEMBERED_ROWS:
                self._rows.popitem(last=False)

    def _recall(self, pk: str) -> object:
        """The row last read for this key (``_ABSENT`` if it did not exist), or None if unknown."""
        with self._rows_lock:
            return self._rows.pop(pk, None)

    def _table(self, role: str) -> TableClient:
        client = self._clients[role]
        if role not in self._ready:
            with (
                _mapped(f"create table {client.table_name}", self._timeout),
                suppress(ResourceExistsError),
            ):
                client.create_table()
            self._ready.add(role)
        return client

    # -- registration log ----------------------------------------------------------------------------------------

    def append_registration(self, rec: RegistrationRecord) -> None:
        """Upsert the log row, then the by-hour index row (same RowKey): idempotent."""
        props = _registration_entity(rec)
        rk = keys.registration_row_key(rec)
        log_row = {
            "PartitionKey": keys.registration_partition_key(rec.registration_id),
            "RowKey": rk,
        }
        hour_row = {
            "PartitionKey": keys.inverted_hour(rec.time),
            "RowKey": rk,
            "hour": keys.hour_bucket(rec.time),
        }
        log_table = self._table("log")
        hour_table = self._table("hour")
        with _mapped("append registration", self._timeout):
            log_table.upsert_entity({**log_row, **props}, mode=UpdateMode.REPLACE)
            hour_table.upsert_entity({**hour_row, **props}, mode=UpdateMode.REPLACE)

    def has_registration(self, rec: RegistrationRecord) -> bool:
        """True if exactly this record is in the log."""
        table = self._table("log")
        pk = keys.registration_partition_key(rec.registration_id)
        with _mapped("read registration", self._timeout):
            try:
                table.get_entity(pk, keys.registration_row_key(rec))
            except ResourceNotFoundError:
                return False
        return True

    def registration_history(
        self, registration_id: str, *, limit: int = 20
    ) -> list[RegistrationRecord]:
        """One partition, already newest first."""
        pk = keys.registration_partition_key(registration_id)
        return self._query_registrations(
            "log", "PartitionKey eq @pk", {"pk": pk}, limit, "registration history"
        )

    def registrations_since(self, since: datetime, *, limit: int = 100) -> list[RegistrationRecord]:
        """One range query over the inverted by-hour index."""
        pk_max, rk_max = keys.since_bounds(since)
        return self._query_registrations(
            "hour",
            "PartitionKey le @pk and RowKey le @rk",
            {"pk": pk_max, "rk": rk_max},
            limit,
            "registrations since",
        )

    def _query_registrations(
        self, role: str, query: str, params: dict[str, Any], limit: int, op: str
    ) -> list[RegistrationRecord]:
        table = self._table(role)
        with _mapped(op, self._timeout):
            pages = table.query_entities(
                query, parameters=params, results_per_page=min(limit, 1000)
            )
            return [_registration_from_entity(e) for e in islice(pages, limit)]

    # -- inventory -----------------------------------------------------------------------------------------------

    def get_device(self, registration_id: str) -> DeviceRecord | None:
        """Point read of the inventory row."""
        table = self._table("devices")
        pk = keys.registration_partition_key(registration_id)
        with _mapped("read device", self._timeout):
            try:
                entity = table.get_entity(pk, keys.DEVICE_ROW_KEY)
            except ResourceNotFoundError:
                self._remember(pk, None)
                return None
        self._remember(pk, entity)
        return _device_from_entity(entity)

    def list_devices(
        self, *, hub: str | None = None, status: DeviceStatus | None = None, limit: int = 1000
    ) -> list[DeviceRecord]:
        """Filtered scan of the inventory table (inventories are small; no secondary index)."""
        table = self._table("devices")
        clauses = ["RowKey eq @rk"]
        params: dict[str, Any] = {"rk": keys.DEVICE_ROW_KEY}
        if hub is not None:
            clauses.append("hub eq @hub")
            params["hub"] = hub
        if status is not None:
            clauses.append("status eq @status")
            params["status"] = status.value
        with _mapped("list devices", self._timeout):
            rows = table.query_entities(" and ".join(clauses), parameters=params)
            return [_device_from_entity(e) for e in islice(rows, limit)]

    def update_device(self, registration_id: str, change: DeviceChange) -> DeviceRecord | None:
        """Read-change-write with etags, retried on conflicts."""
        table = self._table("devices")
        pk = keys.registration_partition_key(registration_id)
        remembered = self._recall(pk)
        for attempt in range(MAX_UPDATE_ATTEMPTS):
            with _mapped("update device", self._timeout):
                entity: TableEntity | None
                if remembered is not None:  # first attempt only: the etag decides if it is stale
                    entity = None if remembered is _ABSENT else remembered  # type: ignore[assignment]
                    remembered = None
                else:
                    try:
                        entity = table.get_entity(pk, keys.DEVICE_ROW_KEY)
                    except ResourceNotFoundError:
                        entity = None
                current = None if entity is None else _device_from_entity(entity)
                new = change(current)
                if new is None:
                    return current
                row = {"PartitionKey": pk, "RowKey": keys.DEVICE_ROW_KEY, **_device_entity(new)}
                try:
                    if entity is None:
                        table.create_entity(row)
                    else:
                        table.update_entity(
                            row,
                            mode=UpdateMode.REPLACE,
                            etag=entity.metadata["etag"],
                            match_condition=MatchConditions.IfNotModified,
                        )
                except (ResourceExistsError, ResourceModifiedError):
                    log.info("inventory row %s changed concurrently; retrying", Quoted(pk))
                    # Jitter so that writers that collided do not collide again in lockstep.
                    time.sleep(random.uniform(0, CONFLICT_BACKOFF_SECONDS * (attempt + 1)))
                    continue
                return new
        raise ConcurrencyConflict(
            f"registrationId: inventory row kept changing, gave up after {MAX_UPDATE_ATTEMPTS} attempts"
        )

    # -- migration -----------------------------------------------------------------------------------------------

    def migrate_keys(self, *, dry_run: bool = False) -> MigrationReport:
        """Move rows written under a registration id as sent to its canonical key (`store.keys`).

        Inventory rows of one device are merged (`store.inventory.merged`: a retirement on either
        wins) into the canonical row, then the old row is deleted; log rows are copied to the
        canonical partition with the same RowKey, then deleted. Idempotent: a second run finds
        nothing to move. The by-hour index is keyed by time and needs nothing.
        """
        devices = self._table("devices")
        moved_devices = moved_records = 0
        with _mapped("migrate devices", self._timeout):
            legacy = [e for e in devices.list_entities() if _legacy_partition(e) is not None]
        for entity in legacy:
            row = _device_from_entity(entity)
            moved_devices += 1
            if dry_run:
                continue
            self.update_device(row.registration_id, partial(merged, other=row))
            with _mapped("migrate devices", self._timeout):
                devices.delete_entity(
                    entity["PartitionKey"],
                    entity["RowKey"],
                    etag=entity.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
        table = self._table("log")
        with _mapped("migrate registrations", self._timeout):
            legacy = [e for e in table.list_entities() if _legacy_partition(e) is not None]
            for entity in legacy:
                moved_records += 1
                if dry_run:
                    continue
                canonical = _legacy_partition(entity)
                table.upsert_entity({**entity, "PartitionKey": canonical}, mode=UpdateMode.REPLACE)
                table.delete_entity(entity["PartitionKey"], entity["RowKey"])
        return MigrationReport(devices=moved_devices, registrations=moved_records)


@dataclass(frozen=True, kw_only=True)
class MigrationReport:
    """How many rows `migrate_keys` moved (or, in a dry run, would move)."""

    devices: int = 0
    registrations: int = 0


def _legacy_partition(entity: TableEntity) -> str | None:
    """The canonical PartitionKey of a row stored under another one, else None."""
    pk = entity["PartitionKey"]
    try:
        canonical = keys.registration_partition_key(keys.unescape_key(pk))
    except InvalidKey:  # its canonical form no longer fits a key: left where it is
        return None
    return canonical if canonical != pk else None


# -- entities ----------------------------------------------------------------------------------------------------


def _registration_entity(rec: RegistrationRecord) -> dict[str, Any]:
    props = registration_to_dict(rec)
    props["payload_keys"] = json.dumps(props["payload_keys"])  # Table properties cannot hold lists
    return props


def _registration_from_entity(entity: dict[str, Any]) -> RegistrationRecord:
    try:
        return registration_from_dict(entity)
    except RecordError as exc:
        raise StoreError(f"registration row is malformed: {exc}") from None


def _device_entity(dev: DeviceRecord) -> dict[str, Any]:
    return device_to_dict(dev)


def _device_from_entity(entity: dict[str, Any]) -> DeviceRecord:
    try:
        return device_from_dict(entity)
    except RecordError as exc:
        raise StoreError(f"device row is malformed: {exc}") from None


@contextmanager
def _mapped(op: str, timeout: float) -> Iterator[None]:
    """Translate SDK errors into the store's errors (without the SDK's message)."""
    try:
        yield
    except (ServiceRequestTimeoutError, ServiceResponseTimeoutError) as exc:
        raise StoreTimeout(f"{op}: no answer within {timeout:g} s ({type(exc).__name__})") from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise StoreUnavailable(f"{op}: storage unreachable ({type(exc).__name__})") from None
    except ClientAuthenticationError:
        raise StoreUnavailable(f"{op}: storage rejected the credentials") from None
    except HttpResponseError as exc:
        status = exc.status_code
        if status in _RETRYABLE_STATUS:
            raise StoreUnavailable(f"{op}: storage answered {status}") from None
        code = getattr(exc, "error_code", None)
        raise StoreError(f"{op}: storage answered {status} ({code})") from None
    except AzureError as exc:
        raise StoreUnavailable(f"{op}: storage failed ({type(exc).__name__})") from None
