"""`TableStore`: `store.base.Store` on Azure Table storage (or Azurite): azure-data-tables, and
`store.rest` for the webhook's hot path. The table design and its trade-offs are in `store.keys`.

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
- The webhook's hot path (the retired check's point read, then the transaction or the log row's
  upsert) goes through `store.rest` on its own HTTP/1.1 client (`store.wire`), below the SDK, with
  the account, credential and API version of the SDK's own client, at about a tenth of the
  SDK's CPU per request (figures in `store.rest`). ``on_send`` (tests and benchmarks) is told the
  method of every request that path sends. The SDK keeps every other call, and the hot path too
  when the environment names a proxy (only the SDK's transport honours one).
- On that path the store bounds its own hot-path calls by the invocation's deadline
  (`bounds_own_calls`): the webhook runs them inline (`store.deadline`), each request taking its
  timeouts from what is left, and the SDK calls they may make (creating the table on first use,
  the legacy lookups) going on the deadline's thread. On the SDK path the webhook runs every
  store call on that thread, as before.
- One ``requests.Session`` is shared by the SDK's three tables, and when no proxy is configured in
  the environment it does not re-read the environment for proxy settings on every request
  (``trust_env``: half a millisecond per request on a host with a large environment). The last
  inventory row read (with its etag) is remembered per registration id, so the webhook's retired
  check and its inventory update that follows make one read, not two; the etag still guards the
  write, and a stale memory only costs the re-read that would have happened anyway.
- Error mapping (the same for both paths): connection failures, 408/429/5xx and authentication
  failures → `StoreUnavailable`; connect or read timeouts → `StoreTimeout`; anything else →
  `StoreError`. Messages carry the operation, the exception type, the status and the service's
  error code, never the service's or the SDK's message (it can contain a SAS-signed URL).
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeVar

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
from azure.core.rest import HttpRequest
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
from store.changeset import Change, changeset_body, part_statuses
from store.deadline import active, call_with_deadline
from store.inventory import InventoryOps, merged, provisioned
from store.logline import Quoted
from store.records import (
    DeviceRecord,
    DeviceStatus,
    Outcome,
    RecordError,
    RegistrationRecord,
    device_from_dict,
    device_to_dict,
    registration_from_dict,
    registration_to_dict,
)
from store.rest import Refused, TableRest, Unanswered
from store.settings import StoreSettings

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_UPDATE_ATTEMPTS = 12
CONFLICT_BACKOFF_SECONDS = 0.01
_RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
_REMEMBERED_ROWS = 1024
_CONFLICT_STATUS = {409, 412}  # created meanwhile / etag no longer matches
_TABLE_NOT_FOUND = "TableNotFound"
# What the SDK turns into ClientAuthenticationError (azure.data.tables._error._decode_error).
_AUTHENTICATION_CODES = {"AuthenticationFailed", "InvalidAuthenticationInfo"}


class TableStore(InventoryOps):
    """Registration log and device inventory in one table (see `store.keys` for the design)."""

    def __init__(
        self,
        connection_string: str,
        *,
        table_prefix: str = "dps",
        timeout_seconds: float = 2.0,
        session: requests.Session | None = None,
        on_send: Callable[[str], None] | None = None,
    ):
        self._timeout = timeout_seconds
        import requests  # noqa: PLC0415 -- azure-core's transport already depends on it

        self._session = session if session is not None else requests.Session()
        # Without a proxy in the environment, skip requests' per-request environment scan.
        self._session.trust_env = any(name.lower() in _PROXY_VARIABLES for name in os.environ)
        self._transport = RequestsTransport(
            session=self._session,
            session_owner=False,
            connection_timeout=timeout_seconds,
            read_timeout=timeout_seconds,
        )
        self._rows: OrderedDict[str, _Row] = OrderedDict()
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
            "registry": f"{table_prefix}{keys.REGISTRY_TABLE}",
            "legacy devices": f"{table_prefix}{keys.LEGACY_DEVICES_TABLE}",
            "legacy hours": f"{table_prefix}{keys.LEGACY_HOURS_TABLE}",
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
        # The hot path's two requests go below the SDK unless a proxy is configured (only the
        # SDK's transport honours one) or the credential is neither an account key nor a SAS.
        self._rest: TableRest | None = None
        if not self._session.trust_env:
            with suppress(ValueError):
                self._rest = TableRest.from_client(
                    self._clients["registry"], timeout=timeout_seconds, on_send=on_send
                )
        # The hot path's requests take their timeouts from an inline call's deadline (`store.rest`);
        # its rare SDK calls go on the deadline's thread (`_bounded`).
        self.bounds_own_calls = self._rest is not None
        self._ready = False
        # Until a read finds no legacy inventory table, a device missing from the registry is
        # looked up there too (see `store.keys`, "Upgrading"). One extra read per process after
        # `python -m store migrate` has removed that table.
        self._legacy_inventory = True

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> TableStore:
        """Build from validated settings (`SettingsError` if there is no connection string)."""
        return cls(
            settings.require_connection_string(),
            table_prefix=settings.table_prefix,
            timeout_seconds=settings.timeout_seconds,
        )

    def close(self) -> None:
        """Close the HTTP sessions and connections."""
        for client in self._clients.values():
            client.close()
        self._session.close()
        if self._rest is not None:
            self._rest.close()

    def _remember(self, pk: str, row: _Row) -> None:
        with self._rows_lock:
            self._rows[pk] = row
            self._rows.move_to_end(pk)
            while len(self._rows) > _REMEMBERED_ROWS:
                self._rows.popitem(last=False)

    def _recall(self, pk: str) -> _Row | None:
        """The device row last read for this key, or None if unknown (forgotten once recalled)."""
        with self._rows_lock:
            return self._rows.pop(pk, None)

    def _registry(self) -> TableClient:
        client = self._clients["registry"]
        if not self._ready:
            with (
                _mapped(f"create table {client.table_name}", self._timeout),
                suppress(ResourceExistsError),
            ):
                _bounded(client.create_table, "create table")
            self._ready = True
        return client

    # -- registration log ----------------------------------------------------------------------------------------

    def append_registration(self, rec: RegistrationRecord) -> None:
        """Upsert the log row: idempotent (same record, same RowKey)."""
        table = self._registry()
        with _mapped("append registration", self._timeout):
            self._upsert(table, _log_row(rec))

    def _upsert(self, table: TableClient, entity: dict[str, Any]) -> None:
        """Insert or replace one row."""
        if self._rest is None:
            table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        else:
            self._rest.upsert(entity)

    def record_registration(self, rec: RegistrationRecord) -> None:
        """The log row and, for an assignment, the inventory update: one entity-group transaction
        in the device's partition, so a logged record is always counted. The inventory row comes
        from the retired check's read when it is remembered (its etag guards the write); a
        conflict re-reads and retries."""
        log_row = _log_row(rec)
        if rec.outcome is not Outcome.ASSIGNED:
            self.append_registration(rec)
            return
        table = self._registry()
        pk = log_row["PartitionKey"]
        remembered = self._recall(pk)
        for attempt in range(MAX_UPDATE_ATTEMPTS):
            with _mapped("record registration", self._timeout):
                row = remembered if remembered is not None else self._read_row(pk)
                remembered = None
                new = provisioned(row.record, rec)
                if new == row.record and row.etag is not None:
                    # Counted before (a replay or a retry): the log row alone.
                    self._upsert(table, log_row)
                    return
                try:
                    self._transact(
                        table,
                        [Change("upsert", log_row), _device_change(pk, new, row)],
                        "record registration",
                    )
                except _Conflict:
                    self._conflict(pk, attempt)
                    continue
                return
        raise ConcurrencyConflict(
            f"registrationId: inventory row kept changing, gave up after {MAX_UPDATE_ATTEMPTS} attempts"
        )

    def _transact(self, table: TableClient, changes: list[Change], op: str) -> None:
        """One entity-group transaction, its body built by `store.changeset`: sent by the REST
        client, or through the SDK client's own pipeline when there is none (see `store.changeset`
        for why not `submit_transaction`). `_Conflict` when the service refused it for a
        concurrent change (409, 412)."""
        if self._rest is not None:
            statuses = self._rest.transact(changes)
        else:
            statuses = _sdk_transact(table, changes)
        if not statuses:
            raise StoreError(f"{op}: storage answered a transaction with no parts")
        refused = next((status for status in statuses if not 200 <= status < 300), None)
        if refused in _CONFLICT_STATUS:
            raise _Conflict
        if refused is not None:
            raise StoreError(f"{op}: storage refused the transaction ({refused})")

    def has_registration(self, rec: RegistrationRecord) -> bool:
        """True if exactly this record is in the log."""
        table = self._registry()
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
        """One partition, already newest first (the device row sorts after every log row)."""
        table = self._registry()
        pk = keys.registration_partition_key(registration_id)
        with _mapped("registration history", self._timeout):
            pages = table.query_entities(
                "PartitionKey eq @pk and RowKey lt @device",
                parameters={"pk": pk, "device": keys.DEVICE_ROW_KEY},
                results_per_page=min(limit, 1000),
            )
            return [_registration_from_entity(e) for e in islice(pages, limit)]

    def registrations_since(self, since: datetime, *, limit: int = 100) -> list[RegistrationRecord]:
        """Every device's log rows at or after `since`: a RowKey range over the whole table, which
        the service answers by scanning it (no index on the hot path; see `store.keys`), merged
        newest first here."""
        table = self._registry()
        with _mapped("registrations since", self._timeout):
            rows = table.query_entities(
                "RowKey le @rk", parameters={"rk": keys.since_row_key(since)}
            )
            newest = heapq.nsmallest(limit, rows, key=lambda entity: str(entity["RowKey"]))
        return [_registration_from_entity(e) for e in newest]

    # -- inventory -----------------------------------------------------------------------------------------------

    def get_device(self, registration_id: str) -> DeviceRecord | None:
        """Point read of the inventory row (remembered, with its etag, for the write that follows)."""
        self._registry()
        pk = keys.registration_partition_key(registration_id)
        with _mapped("read device", self._timeout):
            row = self._read_row(pk)
        self._remember(pk, row)
        return row.record

    def _read_row(self, pk: str, *, legacy: bool = True) -> _Row:
        """The device row of a partition; from the legacy inventory table when only it has one."""
        if self._rest is not None:
            found = self._rest.read(pk, keys.DEVICE_ROW_KEY)
            if found is not None:
                return _Row(etag=found.etag, record=_device_from_entity(found.properties))
        else:
            try:
                entity = self._clients["registry"].get_entity(pk, keys.DEVICE_ROW_KEY)
            except ResourceNotFoundError:
                pass
            else:
                return _Row(etag=entity.metadata["etag"], record=_device_from_entity(entity))
        if not (legacy and self._legacy_inventory):
            return _Row(etag=None, record=None)
        try:
            old_table = self._clients["legacy devices"]
            entity = _bounded(
                partial(old_table.get_entity, pk, keys.DEVICE_ROW_KEY), "legacy lookup"
            )
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == _TABLE_NOT_FOUND:
                self._legacy_inventory = False
            return _Row(etag=None, record=None)
        return _Row(etag=None, record=_device_from_entity(entity))

    def list_devices(
        self, *, hub: str | None = None, status: DeviceStatus | None = None, limit: int = 1000
    ) -> list[DeviceRecord]:
        """The device rows of the table, filtered by the service (a scan: no secondary index)."""
        table = self._registry()
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
        return self._update(keys.registration_partition_key(registration_id), change, legacy=True)

    def _update(self, pk: str, change: DeviceChange, *, legacy: bool) -> DeviceRecord | None:
        table = self._registry()
        remembered = self._recall(pk) if legacy else None
        for attempt in range(MAX_UPDATE_ATTEMPTS):
            with _mapped("update device", self._timeout):
                row = remembered if remembered is not None else self._read_row(pk, legacy=legacy)
                remembered = None  # first attempt only: the etag decides if it is stale
                new = change(row.record)
                if new is None:
                    return row.record
                entity = _device_entity_row(pk, new)
                try:
                    if row.etag is None:
                        table.create_entity(entity)
                    else:
                        table.update_entity(
                            entity,
                            mode=UpdateMode.REPLACE,
                            etag=row.etag,
                            match_condition=MatchConditions.IfNotModified,
                        )
                except (ResourceExistsError, ResourceModifiedError):
                    self._conflict(pk, attempt)
                    continue
                return new
        raise ConcurrencyConflict(
            f"registrationId: inventory row kept changing, gave up after {MAX_UPDATE_ATTEMPTS} attempts"
        )

    def _conflict(self, pk: str, attempt: int) -> None:
        log.info("inventory row %s changed concurrently; retrying", Quoted(pk))
        # Jitter so that writers that collided do not collide again in lockstep; never past the
        # deadline of an inline call (its next request would fail at once anyway).
        pause = random.uniform(0, CONFLICT_BACKOFF_SECONDS * (attempt + 1))
        deadline = active()
        time.sleep(pause if deadline is None else min(pause, deadline.remaining()))

    # -- migration -----------------------------------------------------------------------------------------------

    def migrate(self, *, dry_run: bool = False) -> MigrationReport:
        """Bring rows written by earlier versions to the current design (`store.keys`, "Upgrading").

        1. Each inventory row of the legacy `<prefix>Devices` table is merged into its device's
           row in the registry (`store.inventory.merged`: a retirement on either wins), then
           deleted; the emptied table is deleted, which also ends the legacy lookups.
        2. Log rows stored under a registration id as sent (before keys were canonical) are copied
           to the canonical partition with the same RowKey, then deleted.
        3. The `<prefix>RegistrationsByHour` index is deleted: nothing reads it any more.

        Idempotent: a second run finds nothing to do. A dry run only counts.
        """
        registry = self._registry()
        devices = moved = tables = 0
        legacy_devices = self._clients["legacy devices"]
        with _mapped("migrate devices", self._timeout):
            try:
                legacy_rows = list(legacy_devices.list_entities())
            except ResourceNotFoundError:
                legacy_rows = []
        for entity in legacy_rows:
            devices += 1
            if dry_run:
                continue
            record = _device_from_entity(entity)
            pk = keys.registration_partition_key(record.registration_id)
            self._update(pk, partial(merged, other=record), legacy=False)
            with _mapped("migrate devices", self._timeout):
                legacy_devices.delete_entity(entity["PartitionKey"], entity["RowKey"])
        with _mapped("migrate registrations", self._timeout):
            legacy_logs = [
                e
                for e in registry.list_entities()
                if e["RowKey"] != keys.DEVICE_ROW_KEY and _legacy_partition(e) is not None
            ]
            for entity in legacy_logs:
                moved += 1
                if dry_run:
                    continue
                canonical = _legacy_partition(entity)
                registry.upsert_entity(
                    {**entity, "PartitionKey": canonical}, mode=UpdateMode.REPLACE
                )
                registry.delete_entity(entity["PartitionKey"], entity["RowKey"])
            for role in ("legacy devices", "legacy hours"):
                if dry_run:
                    continue
                try:
                    self._clients[role].delete_table()
                    tables += 1
                except ResourceNotFoundError:
                    pass
        if not dry_run:
            self._legacy_inventory = False
        return MigrationReport(devices=devices, registrations=moved, tables=tables)


@dataclass(frozen=True)
class _Row:
    """A device row as read: its etag in the registry (None when absent there; it guards the
    next write) and the record it holds (from the legacy table when only that has one)."""

    etag: str | None
    record: DeviceRecord | None


def _bounded(call: Callable[[], T], what: str) -> T:
    """`call()` (an SDK call, its timeouts fixed when its client was built): on the deadline's
    thread inside an inline `call_with_deadline`, so it too ends within what is left; else as is."""
    deadline = active()
    if deadline is None:
        return call()
    return call_with_deadline(call, deadline, what=what)


class _Conflict(Exception):
    """A transaction was refused because the device row changed meanwhile (409 or 412)."""


def _sdk_transact(table: TableClient, changes: list[Change]) -> list[int]:
    """Send a transaction through the SDK client's pipeline (same authentication, headers,
    transport, timeouts and errors as its other calls); the status of each answer part."""
    content_type, body = changeset_body(table.url, table.table_name, changes)
    request = HttpRequest(
        "POST",
        f"{table.url}/$batch",
        headers={
            "Content-Type": content_type,
            "Accept": "application/json",
            "DataServiceVersion": "3.0",
            "MaxDataServiceVersion": "3.0;NetFx",
            "x-ms-version": table.api_version,
        },
        content=body,
    )
    # The generated client's send_request: the same policies every TableClient call runs.
    response = table._client.send_request(request, stream=True)
    answer = response.read().decode("utf-8", "replace")
    if response.status_code != 202:
        raise HttpResponseError(response=response)
    return part_statuses(answer)


def _device_entity_row(pk: str, new: DeviceRecord) -> dict[str, Any]:
    return {"PartitionKey": pk, "RowKey": keys.DEVICE_ROW_KEY, **_device_entity(new)}


def _device_change(pk: str, new: DeviceRecord, row: _Row) -> Change:
    """Write `new` over `row`: create it, or replace it while the etag still matches."""
    entity = _device_entity_row(pk, new)
    if row.etag is None:
        return Change("create", entity)
    return Change("update", entity, etag=row.etag)


def _log_row(rec: RegistrationRecord) -> dict[str, Any]:
    return {
        "PartitionKey": keys.registration_partition_key(rec.registration_id),
        "RowKey": keys.registration_row_key(rec),
        **_registration_entity(rec),
    }


@dataclass(frozen=True, kw_only=True)
class MigrationReport:
    """What `migrate` moved and deleted (or, in a dry run, would move)."""

    devices: int = 0
    registrations: int = 0
    tables: int = 0


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


def _device_from_entity(entity: Mapping[str, Any]) -> DeviceRecord:
    try:
        return device_from_dict(entity)
    except RecordError as exc:
        raise StoreError(f"device row is malformed: {exc}") from None


@contextmanager
def _mapped(op: str, timeout: float) -> Iterator[None]:
    """Translate SDK errors into the store's errors (without the SDK's message)."""
    try:
        yield
    except Unanswered as exc:
        if exc.timed_out:
            raise StoreTimeout(f"{op}: no answer in time ({exc.reason})") from None
        raise StoreUnavailable(f"{op}: storage unreachable ({exc.reason})") from None
    except Refused as exc:
        if exc.status == 401 or exc.code in _AUTHENTICATION_CODES:
            raise StoreUnavailable(f"{op}: storage rejected the credentials") from None
        if exc.status in _RETRYABLE_STATUS:
            raise StoreUnavailable(f"{op}: storage answered {exc.status}") from None
        raise StoreError(f"{op}: storage answered {exc.status} ({exc.code})") from None
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
