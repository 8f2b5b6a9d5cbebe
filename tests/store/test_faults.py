"""Faults against a real Azurite: stopped or hung mid-run, calls fail fast with the store's errors;
the records logged for replay are restored by the replay command once a new Azurite runs."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from store.__main__ import main
from store.base import StoreError, StoreTimeout, StoreUnavailable
from store.deadline import Deadline, call_with_deadline
from store.records import Outcome, RegistrationRecord
from store.replay import format_replay_line
from store.settings import StoreSettings
from store.tables import TableStore
from tests.azurite import Azurite, fresh_prefix

pytestmark = pytest.mark.e2e

TIMEOUT = 0.5
KEY = "replay-signing-key-of-32-chars!!"
BOUND = 3.0  # seconds a failing call may take, all in: well under DPS's patience
T0 = datetime(2025, 5, 6, 7, 8, 9, tzinfo=UTC)
log = logging.getLogger("webhook-under-test")


def rec(n: int) -> RegistrationRecord:
    """Assigned record n of device d1."""
    return RegistrationRecord(
        time=T0 + timedelta(seconds=n),
        registration_id="d1",
        device_id="d1",
        outcome=Outcome.ASSIGNED,
        hub="hub-a.azure-devices.net",
    )


def timed(call: object) -> tuple[BaseException | None, float]:
    """Run a zero-argument call; return what it raised and how long it took."""
    assert callable(call)
    started = time.monotonic()
    try:
        call()
    except BaseException as exc:
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


def test_stopped_azurite_fails_fast_and_replay_restores(
    own_azurite: Azurite, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Azurite stopped mid-run: every call raises StoreUnavailable within the bound, the replay line
    carries the record, and the replay command writes it once Azurite is back."""
    prefix = fresh_prefix()
    store = TableStore(own_azurite.connection_string, table_prefix=prefix, timeout_seconds=TIMEOUT)
    store.append_registration(rec(0))
    store.record_provisioning(rec(0))

    own_azurite.stop()
    lost = rec(1)
    for call in (
        lambda: store.append_registration(lost),
        lambda: store.get_device("d1"),
        lambda: store.registration_history("d1"),
        lambda: store.record_provisioning(lost),
    ):
        error, took = timed(call)
        assert isinstance(error, StoreUnavailable), error
        assert took < BOUND
    # What the webhook does after a failed log write: the decision stands, the record goes to the log.
    with caplog.at_level(logging.WARNING, logger="webhook-under-test"):
        log.warning("%s", format_replay_line(lost, key=KEY.encode()))
    logfile = tmp_path / "function.log"
    logfile.write_text("\n".join(f"[Warning] {r.getMessage()}" for r in caplog.records) + "\n")

    own_azurite.start()  # the same port again, in memory: everything before is gone
    env = {
        "AzureWebJobsStorage": own_azurite.connection_string,
        "REGISTRY_TABLE_PREFIX": prefix,
        "STORE_TIMEOUT_SECONDS": "5",
        "REPLAY_SIGNING_KEY": KEY,
    }
    assert main(["replay", str(logfile)], env=env) == 0
    fresh = TableStore(own_azurite.connection_string, table_prefix=prefix)
    assert fresh.registration_history("d1") == [lost]
    device = fresh.get_device("d1")
    assert device is not None
    assert device.provisioning_count == 1
    assert main(["replay", str(logfile)], env=env) == 0  # idempotent
    assert len(fresh.registration_history("d1")) == 1
    fresh.close()


def test_hung_azurite_times_out_within_the_bound(own_azurite: Azurite) -> None:
    """Azurite frozen (accepts connections, never answers): calls raise StoreTimeout within the bound."""
    store = TableStore(
        own_azurite.connection_string, table_prefix=fresh_prefix(), timeout_seconds=TIMEOUT
    )
    store.append_registration(rec(0))
    own_azurite.pause()
    try:
        for call in (lambda: store.get_device("d1"), lambda: store.append_registration(rec(1))):
            error, took = timed(call)
            assert isinstance(error, StoreTimeout), error
            assert took < BOUND
    finally:
        own_azurite.resume()
    # Answers again once resumed. The timed-out write may still land (it was in the socket buffer):
    # harmless, because the same record replayed later upserts the same row.
    history = store.registration_history("d1")
    assert rec(0) in history
    assert set(history) <= {rec(0), rec(1)}


def test_hung_azurite_fails_the_webhooks_calls_within_their_deadline(own_azurite: Azurite) -> None:
    """As the webhook calls the store (inline, under one deadline for the invocation): with
    Azurite frozen, the retired check and the record write each raise StoreTimeout within the
    deadline, though the store's own timeouts are longer than the bound."""
    store = TableStore(
        own_azurite.connection_string, table_prefix=fresh_prefix(), timeout_seconds=2 * BOUND
    )
    assert store.bounds_own_calls
    store.append_registration(rec(0))
    own_azurite.pause()
    try:
        for call in (lambda: store.get_device("d1"), lambda: store.record_registration(rec(1))):
            error, took = timed(
                lambda call=call: call_with_deadline(call, Deadline.after(TIMEOUT), inline=True)
            )
            assert isinstance(error, StoreTimeout), error
            assert took < BOUND
    finally:
        own_azurite.resume()
    assert rec(0) in store.registration_history("d1")


def test_errors_never_carry_the_connection_string(own_azurite: Azurite) -> None:
    """A failing call's message and its chained causes hide the account key."""
    store = TableStore(
        own_azurite.connection_string, table_prefix=fresh_prefix(), timeout_seconds=TIMEOUT
    )
    own_azurite.stop()
    error, _ = timed(lambda: store.get_device("d1"))
    assert isinstance(error, StoreError)
    assert error.__cause__ is None
    assert "AccountKey" not in str(error)
    assert "Eby8" not in str(error)


def test_bad_connection_string_is_a_store_error() -> None:
    """A connection string the SDK cannot parse raises StoreError naming the setting."""
    with pytest.raises(StoreError, match="AzureWebJobsStorage"):
        TableStore.from_settings(
            StoreSettings(connection_string="UseDevelopmentStorage=true;Extra=1")
        )
