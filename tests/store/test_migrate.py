"""`python -m store migrate`: rows written under an id as sent move to its canonical key, and two
rows of one device merge with the retirement winning (issue #14.1's migration note)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
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
from tests.store.azurite import Azurite
from tests.store.conftest import fresh_prefix

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


def test_migrate_moves_legacy_rows_to_canonical_keys(azurite: Azurite) -> None:
    """Legacy mixed-case rows move under the canonical key and merge; a second run moves nothing."""
    prefix = fresh_prefix()
    store = TableStore(azurite.connection_string, table_prefix=prefix, timeout_seconds=5)
    store.record_provisioning(
        RegistrationRecord(
            time=T0 + timedelta(days=2),
            registration_id="indiv-dev",
            outcome=Outcome.ASSIGNED,
            hub="hub-b.azure-devices.net",
        )
    )
    legacy_device = device(
        "Indiv-Dev", status=DeviceStatus.RETIRED, retired_reason="stolen", retired_at=T0
    )
    legacy_record = RegistrationRecord(
        time=T0,
        registration_id="Indiv-Dev",
        outcome=Outcome.ASSIGNED,
        hub="hub-a.azure-devices.net",
    )
    devices = TableClient.from_connection_string(azurite.connection_string, f"{prefix}Devices")
    log = TableClient.from_connection_string(azurite.connection_string, f"{prefix}Registrations")
    log.create_table()
    devices.upsert_entity(
        {"PartitionKey": "Indiv-Dev", "RowKey": "device", **device_to_dict(legacy_device)}
    )
    record_props = registration_to_dict(legacy_record)
    record_props["payload_keys"] = json.dumps(record_props["payload_keys"])
    log.upsert_entity({"PartitionKey": "Indiv-Dev", "RowKey": "0001-legacy", **record_props})
    env = {"AzureWebJobsStorage": azurite.connection_string, "REGISTRY_TABLE_PREFIX": prefix}

    assert main(["migrate", "--dry-run"], env=env) == 0
    assert store.get_device("INDIV-DEV") is not None
    assert store.get_device("INDIV-DEV").status is DeviceStatus.ACTIVE  # type: ignore[union-attr]
    assert main(["migrate"], env=env) == 0

    row = TableStore(azurite.connection_string, table_prefix=prefix).get_device("INDIV-DEV")
    assert row is not None
    assert (row.status, row.provisioning_count) == (DeviceStatus.RETIRED, 2)
    assert [r.registration_id for r in store.registration_history("INDIV-DEV")] == ["Indiv-Dev"]
    assert {e["PartitionKey"] for e in devices.list_entities()} == {"indiv-dev"}
    assert {e["PartitionKey"] for e in log.list_entities()} == {"indiv-dev"}
    store.close()


def test_migrate_reports_what_it_moved(
    azurite: Azurite, capsys: pytest.CaptureFixture[str]
) -> None:
    """The summary line counts rows; with nothing legacy it says 0 and exits 0."""
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "REGISTRY_TABLE_PREFIX": fresh_prefix(),
    }
    assert main(["migrate"], env=env) == 0
    assert "moved 0 inventory rows and 0 registration rows" in capsys.readouterr().out
    assert main(["migrate"], env={}) == 2  # no AzureWebJobsStorage
