"""TableStore specifics on Azurite: the remembered row never loses another writer's update."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from devtools.azurite import RequestCount
from store.records import Outcome, RegistrationRecord
from store.tables import TableStore
from tests.azurite import Azurite, fresh_prefix

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


def test_a_webhook_call_makes_at_most_two_round_trips(azurite: Azurite) -> None:
    """Retired check, then the log row and the inventory update in one transaction: two requests
    per call, for a new device, a known one and a denied one (issue #15.4)."""
    count = RequestCount()
    sent = count.sent
    store = TableStore(
        azurite.connection_string,
        table_prefix=fresh_prefix(),
        timeout_seconds=5,
        session=count.session,
        on_send=count.on_send,
    )
    store.get_device("warm-up")  # creates the table, learns there is no legacy inventory
    for n, outcome in enumerate([Outcome.ASSIGNED, Outcome.ASSIGNED, Outcome.DENIED]):
        sent.clear()
        rec = RegistrationRecord(
            time=T0 + timedelta(seconds=n),
            registration_id="dev-1",
            outcome=outcome,
            hub="h.net" if outcome is Outcome.ASSIGNED else None,
        )
        store.get_device(rec.registration_id)
        store.record_registration(rec)
        assert len(sent) == 2, sent
    device = store.get_device("dev-1")
    assert device is not None
    assert device.provisioning_count == 2
    store.close()
