"""`python -m store migrate` and the upgrade window: legacy inventory rows stay visible until moved
into the registry under canonical keys, two rows of one device merge with the retirement winning,
and the legacy tables are deleted (issues #14.1 and #15.4)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from store.__main__ import main
from store.inventory import merged
from store.records import (
    ConnectionState,
    DeviceRecord,
    DeviceStatus,
    Outcome,
    RegistrationRecord,
    device_to_dict,
    registration_to_dict,
)
from store.tables import TableStore
from tests.azurite import Azurite, fresh_prefix

T0 = datetime(2025, 9, 1, 8, 0, tzinfo=UTC)


def device(registration_id: str, **fields: object) -> DeviceRecord:
    """An inventory row provisioned once at T0 on hub-a."""
    values: dict[str, object] = {
        "registration_id": registration_id,
        "device_id": registration_id,
        "hub": "hub-a.azure-devices.net",
        "first_provisioned": T0,
        "last_provisioned": T0,
        "provisioning_count": 1,
        "counted": ("aaaa",),
    }
    values.update(fields)
    return DeviceRecord(**values)  # type: ignore[arg-type]


def test_merge_keeps_a_retirement_and_adds_counts() -> None:
    """An active canonical row merged with a retired legacy row is retired, with both counts."""
    active = device(
        "indiv-dev",
        last_provisioned=T0 + timedelta(days=2),
        hub="hub-b.azure-devices.net",
        provisioning_count=2,
        counted=("bbbb",),
    )
    retired = device(
        "Indiv-Dev",
        status=DeviceStatus.RETIRED,
        retired_reason="stolen",
        retired_at=T0 + timedelta(days=1),
        connection_state=ConnectionState.CONNECTED,
        last_seen=T0 + timedelta(days=3),
    )
    row = merged(active, retired)
    assert row.registration_id == "indiv-dev"
    assert (row.status, row.retired_reason) == (DeviceStatus.RETIRED, "stolen")
    assert row.provisioning_count == 3
    assert row.hub == "hub-b.azure-devices.net"  # the newest provisioning
    assert (row.first_provisioned, row.last_provisioned) == (T0, T0 + timedelta(days=2))
    assert row.connection_state is ConnectionState.CONNECTED  # the newest connection event
    assert row.counted == ("bbbb", "aaaa")
    assert merged(None, retired) == device(
        "indiv-dev",
        device_id="Indiv-Dev",
        status=DeviceStatus.RETIRED,
        retired_reason="stolen",
        retired_at=T0 + timedelta(days=1),
        connection_state=ConnectionState.CONNECTED,
        last_seen=T0 + timedelta(days=3),
    )


def legacy_layout(azurite: Azurite, prefix: str) -> tuple[TableClient, TableClient]:
    """The tables an earlier version wrote: inventory rows in `<prefix>Devices` (one under a
    mixed-case id, as sent), log rows in `<prefix>Registrations`, a by-hour index."""
    connection = azurite.connection_string
    devices = TableClient.from_connection_string(connection, f"{prefix}Devices")
    log = TableClient.from_connection_string(connection, f"{prefix}Registrations")
    hours = TableClient.from_connection_string(connection, f"{prefix}RegistrationsByHour")
    for table in (devices, log, hours):
        table.create_table()
    retired = {"status": DeviceStatus.RETIRED, "retired_reason": "stolen", "retired_at": T0}
    for pk, row in (
        ("Indiv-Dev", device("Indiv-Dev", **retired)),  # type: ignore[arg-type]
        ("plain-dev", device("plain-dev", **retired)),  # type: ignore[arg-type]
    ):
        devices.upsert_entity({"PartitionKey": pk, "RowKey": "device", **device_to_dict(row)})
    record = RegistrationRecord(
        time=T0,
        registration_id="Indiv-Dev",
        outcome=Outcome.ASSIGNED,
        hub="hub-a.azure-devices.net",
    )
    props = registration_to_dict(record)
    props["payload_keys"] = json.dumps(props["payload_keys"])
    log.upsert_entity({"PartitionKey": "Indiv-Dev", "RowKey": "0001-legacy", **props})
    return devices, log


def test_before_migrating_a_retired_device_stays_retired(azurite: Azurite) -> None:
    """Deployed over the old tables, the store still finds an inventory row only the legacy table
    has, and its next write carries it into the registry (the count goes on)."""
    prefix = fresh_prefix()
    legacy_layout(azurite, prefix)
    store = TableStore(azurite.connection_string, table_prefix=prefix, timeout_seconds=5)
    row = store.get_device("plain-dev")
    assert row is not None
    assert row.status is DeviceStatus.RETIRED
    counted = store.record_provisioning(
        RegistrationRecord(time=T0 + timedelta(days=1), registration_id="plain-dev",
                           outcome=Outcome.ASSIGNED, hub="hub-a.azure-devices.net")
    )  # fmt: skip
    assert (counted.status, counted.provisioning_count) == (DeviceStatus.RETIRED, 2)
    store.close()


def test_migrate_moves_legacy_rows_and_deletes_the_old_tables(azurite: Azurite) -> None:
    """Legacy inventory rows move into the registry under canonical keys, merging with rows there
    (the retirement wins); legacy log partitions move; the old tables go; a second run does
    nothing."""
    prefix = fresh_prefix()
    devices, log = legacy_layout(azurite, prefix)
    store = TableStore(azurite.connection_string, table_prefix=prefix, timeout_seconds=5)
    store.record_registration(
        RegistrationRecord(
            time=T0 + timedelta(days=2),
            registration_id="indiv-dev",
            outcome=Outcome.ASSIGNED,
            hub="hub-b.azure-devices.net",
        )
    )
    assert store.get_device("INDIV-DEV").status is DeviceStatus.ACTIVE  # type: ignore[union-attr]
    env = {"AzureWebJobsStorage": azurite.connection_string, "REGISTRY_TABLE_PREFIX": prefix}

    assert main(["migrate", "--dry-run"], env=env) == 0
    assert main(["migrate"], env=env) == 0

    fresh = TableStore(azurite.connection_string, table_prefix=prefix, timeout_seconds=5)
    row = fresh.get_device("INDIV-DEV")
    assert row is not None
    assert (row.status, row.provisioning_count) == (DeviceStatus.RETIRED, 2)
    assert row.hub == "hub-b.azure-devices.net"
    plain = fresh.get_device("plain-dev")
    assert plain is not None
    assert plain.status is DeviceStatus.RETIRED
    assert sorted(r.registration_id for r in fresh.registration_history("INDIV-DEV")) == [
        "Indiv-Dev",
        "indiv-dev",
    ]
    assert {e["PartitionKey"] for e in log.list_entities()} == {"indiv-dev", "plain-dev"}
    with pytest.raises(ResourceNotFoundError):
        list(devices.list_entities())
    assert fresh.migrate().devices == 0
    store.close()
    fresh.close()


def test_migrate_reports_what_it_moved(
    azurite: Azurite, capsys: pytest.CaptureFixture[str]
) -> None:
    """The summary line counts rows; with nothing legacy it says 0 and exits 0."""
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "REGISTRY_TABLE_PREFIX": fresh_prefix(),
    }
    assert main(["migrate"], env=env) == 0
    assert "moved 0 legacy inventory rows and 0 registration rows" in capsys.readouterr().out
    assert main(["migrate"], env={}) == 2  # no AzureWebJobsStorage
