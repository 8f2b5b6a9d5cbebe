"""TableStore specifics on Azurite: the remembered row never loses another writer's update."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from store.records import Outcome, RegistrationRecord
from store.tables import TableStore
from tests.store.azurite import Azurite
from tests.store.conftest import fresh_prefix

T0 = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def assigned(n: int) -> RegistrationRecord:
    return RegistrationRecord(
        time=T0 + timedelta(seconds=n),
        registration_id="dev-1",
        outcome=Outcome.ASSIGNED,
        hub="h.net",
    )


def test_stale_remembered_row_is_reread(azurite: Azurite) -> None:
    """A row changed by another writer after our read is re-read: both counts survive."""
    prefix = fresh_prefix()
    ours = TableStore(azurite.connection_string, table_prefix=prefix, timeout_seconds=5)
    theirs = TableStore(azurite.connection_string, table_prefix=prefix, timeout_seconds=5)
    try:
        ours.record_provisioning(assigned(0))
        assert ours.get_device("dev-1") is not None  # remembered with its etag
        theirs.record_provisioning(assigned(1))  # the row moves on under us
        device = ours.record_provisioning(assigned(2))
        assert device.provisioning_count == 3
        assert theirs.get_device("dev-1") == device
    finally:
        ours.close()
        theirs.close()


def test_remembered_absence_does_not_overwrite_a_new_row(azurite: Azurite) -> None:
    """A device read as absent but created meanwhile by another writer is not overwritten."""
    prefix = fresh_prefix()
    ours = TableStore(azurite.connection_string, table_prefix=prefix, timeout_seconds=5)
    theirs = TableStore(azurite.connection_string, table_prefix=prefix, timeout_seconds=5)
    try:
        assert ours.get_device("dev-1") is None  # remembered as absent
        theirs.record_provisioning(assigned(1))
        assert ours.record_provisioning(assigned(2)).provisioning_count == 2
    finally:
        ours.close()
        theirs.close()
