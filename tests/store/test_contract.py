"""The `Store` contract, run against the in-memory store and against Azurite (see conftest `store`)."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sas.registration_id import canonical_registration_id
from store.base import DeviceNotFound, InvalidKey, Store
from store.lifecycle import LifecycleEvent, LifecycleKind
from store.records import (
    ConnectionState,
    DeviceStatus,
    EnrollmentKind,
    Outcome,
    RegistrationRecord,
)

T0 = datetime(2025, 3, 4, 10, 15, 30, 123456, tzinfo=UTC)
HUB_A = "hub-a.azure-devices.net"
HUB_B = "hub-b.azure-devices.net"


def record(
    registration_id: str = "dev-001",
    *,
    at: timedelta = timedelta(0),
    outcome: Outcome = Outcome.ASSIGNED,
    hub: str | None = HUB_A,
) -> RegistrationRecord:
    """A registration record at T0 + `at`."""
    return RegistrationRecord(
        time=T0 + at,
        registration_id=registration_id,
        device_id=registration_id,
        enrollment_kind=EnrollmentKind.GROUP,
        enrollment_id="group-1",
        outcome=outcome,
        hub=hub if outcome is Outcome.ASSIGNED else None,
        rule="suffix-toaster",
        strategy="first-match",
        reprovision=False,
        payload_size=17,
        payload_keys=("modelId", "site"),
        decision_ms=0.42,
    )


def test_history_is_newest_first(store: Store) -> None:
    """Records of one device come back newest first."""
    recs = [record(at=timedelta(minutes=m)) for m in (5, 0, 90, 30)]
    for rec in recs:
        store.append_registration(rec)
    history = store.registration_history("dev-001")
    assert [r.time for r in history] == sorted((r.time for r in recs), reverse=True)


def test_history_limit_keeps_the_newest(store: Store) -> None:
    """`limit` returns the newest records only."""
    for m in range(5):
        store.append_registration(record(at=timedelta(minutes=m)))
    history = store.registration_history("dev-001", limit=2)
    assert [r.time for r in history] == [T0 + timedelta(minutes=4), T0 + timedelta(minutes=3)]


def test_record_round_trips_every_field(store: Store) -> None:
    """A stored record reads back equal, field for field."""
    rec = replace(
        record(),
        reprovision=True,
        previous_hub=HUB_B,
        reason="because",
        device_id=None,
        payload_keys=(),
        decision_ms=12.75,
    )
    store.append_registration(rec)
    assert store.registration_history("dev-001") == [rec]


def test_append_is_idempotent(store: Store) -> None:
    """Writing the same record twice leaves one row (replay safety)."""
    rec = record()
    store.append_registration(rec)
    store.append_registration(rec)
    assert store.registration_history("dev-001") == [rec]
    assert store.registrations_since(T0) == [rec]


def test_same_microsecond_different_records_both_kept(store: Store) -> None:
    """Two different records at the same time do not overwrite each other."""
    first = record()
    second = replace(first, outcome=Outcome.DENIED, hub=None, reason="retired")
    store.append_registration(first)
    store.append_registration(second)
    assert sorted(r.outcome for r in store.registration_history("dev-001")) == [
        Outcome.ASSIGNED,
        Outcome.DENIED,
    ]


def test_has_registration(store: Store) -> None:
    """`has_registration` is true only for a record that was written."""
    rec = record()
    assert not store.has_registration(rec)
    store.append_registration(rec)
    assert store.has_registration(rec)
    assert not store.has_registration(replace(rec, decision_ms=1.0))


@pytest.mark.parametrize(
    "registration_id",
    ["a/b", "a\\b", "a#b", "a?b", "tab\there", "nul\x00", "del\x7f", "c1\x9f", "pct%2F", "ünï€😀"],
)
def test_ids_with_forbidden_characters_are_stored(store: Store, registration_id: str) -> None:
    """Ids containing characters Table keys forbid are escaped, stored and read back (the log
    verbatim, the inventory row in the canonical form)."""
    rec = record(registration_id)
    store.append_registration(rec)
    store.record_provisioning(rec)
    assert store.registration_history(registration_id) == [rec]
    device = store.get_device(registration_id)
    assert device is not None
    assert device.registration_id == canonical_registration_id(registration_id)


def test_escaping_does_not_merge_ids(store: Store) -> None:
    """`a/b` and the literal text `a%2Fb` stay two devices."""
    store.append_registration(record("a/b"))
    store.append_registration(record("a%2Fb", at=timedelta(seconds=1)))
    assert len(store.registration_history("a/b")) == 1
    assert len(store.registration_history("a%2Fb")) == 1


def test_case_and_unicode_variants_are_one_device(store: Store) -> None:
    """`abc`/`ABC` and composed/decomposed `é` are one inventory row and one history (issue #14.1)."""
    for n, variant in enumerate(["caf\u00e9-1", "CAFE\u0301-1", "Caf\u00c9-1"]):
        rec = record(variant, at=timedelta(minutes=n))
        store.append_registration(rec)
        store.record_provisioning(rec)
    (device,) = store.list_devices()
    assert device.registration_id == "caf\u00e9-1"
    assert device.provisioning_count == 3
    assert store.get_device("CAF\u00c9-1") == device
    assert len(store.registration_history("cafe\u0301-1")) == 3
    store.set_status("CAFE\u0301-1", DeviceStatus.RETIRED, reason="stolen", now=T0)
    retired = store.get_device("caf\u00e9-1")
    assert retired is not None
    assert retired.status is DeviceStatus.RETIRED


def test_history_of_one_device_excludes_others(store: Store) -> None:
    """A device's history is its own partition."""
    store.append_registration(record("dev-001"))
    store.append_registration(record("dev-0011"))
    store.append_registration(record("dev-00"))
    assert [r.registration_id for r in store.registration_history("dev-001")] == ["dev-001"]


def test_too_long_id_is_rejected(store: Store) -> None:
    """An id longer than a table key allows raises InvalidKey naming the field."""
    with pytest.raises(InvalidKey, match="registration_id"):
        store.append_registration(record("x" * 513))
    with pytest.raises(InvalidKey, match="registration_id"):
        store.get_device("/" * 200)  # 600 characters once escaped


def test_registrations_since_spans_hours_newest_first(store: Store) -> None:
    """`registrations_since` returns every device's records at or after `since`, across hour buckets."""
    ats = [-61, -59, -1, 0, 1, 59, 61, 125]
    for i, minutes in enumerate(ats):
        store.append_registration(record(f"dev-{i}", at=timedelta(minutes=minutes)))
    since = T0
    got = store.registrations_since(since)
    assert [r.time for r in got] == [T0 + timedelta(minutes=m) for m in (125, 61, 59, 1, 0)]


def test_registrations_since_includes_exactly_since(store: Store) -> None:
    """A record exactly at `since` is included; one microsecond earlier is not."""
    store.append_registration(record("a"))
    store.append_registration(record("b", at=-timedelta(microseconds=1)))
    assert [r.registration_id for r in store.registrations_since(T0)] == ["a"]


def test_registrations_since_limit(store: Store) -> None:
    """`limit` keeps the newest records."""
    for m in range(6):
        store.append_registration(record(f"d{m}", at=timedelta(minutes=20 * m)))
    got = store.registrations_since(T0, limit=3)
    assert [r.registration_id for r in got] == ["d5", "d4", "d3"]


def test_unknown_device_is_none(store: Store) -> None:
    """No row reads as None."""
    assert store.get_device("nobody") is None


def test_provisioning_counts_and_tracks_hub(store: Store) -> None:
    """Each newer assigned registration counts once and moves the hub."""
    store.record_provisioning(record(at=timedelta(minutes=0)))
    store.record_provisioning(record(at=timedelta(minutes=10), hub=HUB_B))
    device = store.get_device("dev-001")
    assert device is not None
    assert device.provisioning_count == 2
    assert device.hub == HUB_B
    assert device.first_provisioned == T0
    assert device.last_provisioned == T0 + timedelta(minutes=10)
    assert device.status is DeviceStatus.ACTIVE


def test_provisioning_redelivery_does_not_double_count(store: Store) -> None:
    """Recording the same registration twice counts it once."""
    rec = record()
    store.record_provisioning(rec)
    store.record_provisioning(rec)
    device = store.get_device("dev-001")
    assert device is not None
    assert device.provisioning_count == 1


def test_older_registration_counts_but_keeps_the_newest_hub(store: Store) -> None:
    """A late older record is counted and widens first_provisioned, the hub stays the newest one."""
    store.record_provisioning(record(at=timedelta(minutes=10), hub=HUB_B))
    store.record_provisioning(record(at=timedelta(minutes=0), hub=HUB_A))
    device = store.get_device("dev-001")
    assert device is not None
    assert (device.provisioning_count, device.hub) == (2, HUB_B)
    assert (device.first_provisioned, device.last_provisioned) == (T0, T0 + timedelta(minutes=10))


def test_provisioning_requires_assigned(store: Store) -> None:
    """Only assigned registrations are counted."""
    with pytest.raises(ValueError, match="outcome"):
        store.record_provisioning(record(outcome=Outcome.DENIED))
    assert store.get_device("dev-001") is None


def test_retire_and_reinstate(store: Store) -> None:
    """Retire records reason and time; reinstate clears them; provisioning keeps a retired status."""
    store.record_provisioning(record())
    now = T0 + timedelta(days=1)
    retired = store.set_status("dev-001", DeviceStatus.RETIRED, reason="stolen", now=now)
    assert (retired.status, retired.retired_reason, retired.retired_at) == (
        DeviceStatus.RETIRED,
        "stolen",
        now,
    )
    store.record_provisioning(record(at=timedelta(days=2)))
    device = store.get_device("dev-001")
    assert device is not None
    assert device.status is DeviceStatus.RETIRED
    back = store.set_status("dev-001", DeviceStatus.ACTIVE, reason=None, now=now)
    assert (back.status, back.retired_reason, back.retired_at) == (DeviceStatus.ACTIVE, None, None)
    assert store.get_device("dev-001") == back


def test_set_status_unknown_device(store: Store) -> None:
    """Retiring a device with no row raises DeviceNotFound."""
    with pytest.raises(DeviceNotFound):
        store.set_status("ghost", DeviceStatus.RETIRED, reason=None, now=T0)


def test_list_devices_filters(store: Store) -> None:
    """Hub and status filters combine; rows come ordered by registration id."""
    store.record_provisioning(record("c", hub=HUB_A))
    store.record_provisioning(record("a", hub=HUB_A))
    store.record_provisioning(record("b", hub=HUB_B))
    store.set_status("c", DeviceStatus.RETIRED, reason="x", now=T0)
    assert [d.registration_id for d in store.list_devices()] == ["a", "b", "c"]
    assert [d.registration_id for d in store.list_devices(hub=HUB_A)] == ["a", "c"]
    assert [d.registration_id for d in store.list_devices(status=DeviceStatus.RETIRED)] == ["c"]
    assert store.list_devices(hub=HUB_B, status=DeviceStatus.RETIRED) == []


def test_lifecycle_applies_newest_connection_state(store: Store) -> None:
    """A stale disconnect after a newer connect is ignored; a redelivery changes nothing."""
    store.record_provisioning(record(hub="egtesthub1.azure-devices.net"))

    def event(kind: LifecycleKind, seq: int, minute: int) -> LifecycleEvent:
        return LifecycleEvent(
            event_id=f"e{seq}",
            kind=kind,
            hub_name="egtesthub1",
            device_id="dev-001",
            event_time=T0 + timedelta(minutes=minute),
            sequence_number=f"{seq:064X}",
        )

    assert store.apply_lifecycle(event(LifecycleKind.CONNECTED, 2, 5)) is not None
    assert store.apply_lifecycle(event(LifecycleKind.DISCONNECTED, 1, 3)) is None
    assert store.apply_lifecycle(event(LifecycleKind.CONNECTED, 2, 5)) is None
    device = store.get_device("dev-001")
    assert device is not None
    assert device.connection_state is ConnectionState.CONNECTED
    assert device.last_seen == T0 + timedelta(minutes=5)
    assert device.provisioning_count == 1


def test_concurrent_provisionings_lose_no_count(store: Store) -> None:
    """Threads provisioning the same device at once: every registration is counted."""
    threads, per_thread = 4, 3
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(per_thread):
                store.record_provisioning(record(at=timedelta(seconds=t * per_thread + i)))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    device = store.get_device("dev-001")
    assert device is not None
    assert device.provisioning_count == threads * per_thread
    assert device.first_provisioned == T0
    assert device.last_provisioned == T0 + timedelta(seconds=threads * per_thread - 1)


def test_record_registration_logs_and_counts_once(store: Store) -> None:
    """The webhook's write: an assigned record is logged and counted; again, nothing changes; a
    denied one is only logged. History, the since-query and the device list each see only their
    own rows."""
    assigned = record("dev-001")
    denied = record("dev-002", at=timedelta(seconds=1), outcome=Outcome.DENIED)
    for rec in (assigned, assigned, denied):
        store.record_registration(rec)
    assert store.registration_history("DEV-001") == [assigned]
    assert store.registration_history("dev-002") == [denied]
    assert store.registrations_since(T0) == [denied, assigned]
    (device,) = store.list_devices()
    assert (device.registration_id, device.provisioning_count) == ("dev-001", 1)
    assert store.get_device("dev-002") is None
    assert store.has_registration(assigned)


def test_registrations_since_spans_devices_and_skips_device_rows(store: Store) -> None:
    """Records of many devices, with inventory rows beside them, come back newest first."""
    recs = [record(f"dev-{n % 3}", at=timedelta(minutes=n)) for n in range(9)]
    for rec in recs:
        store.record_registration(rec)
    got = store.registrations_since(T0 + timedelta(minutes=2), limit=5)
    assert got == sorted(recs[2:], key=lambda r: r.time, reverse=True)[:5]
    assert {d.registration_id for d in store.list_devices()} == {"dev-0", "dev-1", "dev-2"}


def test_concurrent_registrations_are_all_logged_and_counted(store: Store) -> None:
    """Threads recording registrations of one device at once: every record logged and counted."""
    threads, per_thread = 4, 3
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(per_thread):
                store.record_registration(record(at=timedelta(seconds=t * per_thread + i)))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    device = store.get_device("dev-001")
    assert device is not None
    assert device.provisioning_count == threads * per_thread
    assert len(store.registration_history("dev-001", limit=100)) == threads * per_thread


@pytest.mark.parametrize(
    "registration_id",
    ["a/b", "a\\b", "a#b", "a?b", "tab\there", "nul\x00", "c1\x9f", "pct%2F", "q'uote", "ünï€😀"],
)
def test_transactions_take_any_id(store: Store, registration_id: str) -> None:
    """The webhook's transaction writes rows for ids that need escaping, quoting and URL-encoding,
    and they read back like any other."""
    first, second = record(registration_id), record(registration_id, at=timedelta(seconds=1))
    store.record_registration(first)
    store.record_registration(second)
    assert store.registration_history(registration_id) == [second, first]
    device = store.get_device(registration_id)
    assert device is not None
    assert device.provisioning_count == 2
