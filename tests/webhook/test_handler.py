"""The allocate handler with its store: one record per call, retired devices, and store faults."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from allocation import load_policy
from store.base import StoreUnavailable
from store.memory import MemoryStore
from store.records import DeviceStatus, Outcome, RegistrationRecord
from store.replay import parse_replay_lines, replay
from store.runtime import Runtime
from store.settings import RetiredCheck, StoreSettings
from store.tables import TableStore
from tests.azurite import ACCOUNT_KEY, Azurite, fresh_prefix
from tests.fixtures import FIXTURES as ALL_FIXTURES
from webhook.handler import UNPARSED_ID, AllocateHandler

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ALL_FIXTURES / "webhook"
POLICY = load_policy(
    (ROOT / "examples" / "tutorial-policy.toml").read_text(), source="tutorial-policy.toml"
)
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
TOASTER = "breakroom499-contoso-tstrsd-007"
KEY = b"replay-signing-key-of-32-chars!!"


def body(name: str = "initial-group-request.json", **context: Any) -> bytes:
    document = json.loads((FIXTURES / name).read_text())
    document["deviceRuntimeContext"].update(context)
    return json.dumps(document).encode()


def handler(store: Any, **settings: Any) -> AllocateHandler:
    settings.setdefault("replay_key", KEY)
    runtime = Runtime(
        store=store, hubs=lambda hub: None, settings=StoreSettings(**settings), clock=lambda: NOW
    )
    return AllocateHandler(policy=lambda: POLICY, runtime=lambda: runtime)


class WritesFail(MemoryStore):
    """Reads work, every write fails: the log write after a decision is what breaks."""

    def append_registration(self, rec: RegistrationRecord) -> None:
        raise StoreUnavailable("registration log: table service unreachable")

    def record_provisioning(self, rec: RegistrationRecord) -> Any:
        raise StoreUnavailable("inventory: table service unreachable")

    def record_registration(self, rec: RegistrationRecord) -> None:
        raise StoreUnavailable("registration log: table service unreachable")


class Hangs(MemoryStore):
    """Every call blocks until released: a backend that accepts and never answers."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def get_device(self, registration_id: str) -> Any:
        self.release.wait(10)
        return None


def test_assigned_call_is_logged_and_counted() -> None:
    """An assignment writes its record and counts the device in the inventory."""
    store = MemoryStore()
    answer = handler(store).handle(body("reprovision-with-payload-request.json"))
    assert answer.status == 200
    (record,) = store.registration_history(TOASTER)
    assert record.outcome is Outcome.ASSIGNED
    assert record.hub == "contoso-toasters-hub-1098.azure-devices.net"
    assert (record.rule, record.strategy, record.enrollment_id) == (
        "toasters",
        "hash",
        "contoso-custom-allocated-devices",
    )
    assert record.reprovision is True
    assert record.previous_hub == "contoso-toasters-hub-1098.azure-devices.net"
    assert record.payload_keys == ("MyDeviceFirmwareVersion", "MyDeviceProvisioningVersion")
    assert record.payload_size > 0
    assert record.time == NOW
    device = store.get_device(TOASTER)
    assert device is not None
    assert (device.provisioning_count, device.hub) == (1, record.hub)


@pytest.mark.parametrize(
    ("request_body", "registration_id", "outcome", "status"),
    [
        (body(registrationId="lobby-coffee-1"), "lobby-coffee-1", Outcome.DENIED, 400),
        (
            b'{"deviceRuntimeContext": {"registrationId": "dev-9"}, "linkedHubs": []}',
            "dev-9",
            Outcome.INVALID_REQUEST,
            400,
        ),
        (b"{not json", "(unparsed)", Outcome.INVALID_REQUEST, 400),
    ],
)
def test_every_outcome_writes_one_record(
    request_body: bytes, registration_id: str, outcome: Outcome, status: int
) -> None:
    """Denied and invalid requests are logged too, under the id when one can be read."""
    store = MemoryStore()
    assert handler(store).handle(request_body).status == status
    (record,) = store.registration_history(registration_id)
    assert record.outcome is outcome
    assert record.reason
    assert store.get_device(registration_id) is None


def test_retired_device_is_denied_then_reinstated() -> None:
    """A retired device gets 400 with the reason; once reinstated it is assigned again."""
    store = MemoryStore()
    webhook = handler(store)
    assert webhook.handle(body()).status == 200
    store.set_status(TOASTER, DeviceStatus.RETIRED, reason="stolen", now=NOW)
    answer = webhook.handle(body())
    assert (answer.status, answer.body) == (
        400,
        {"error": "denied", "rule": "(retired)", "reason": "device retired: stolen"},
    )
    store.set_status(TOASTER, DeviceStatus.ACTIVE, reason=None, now=NOW)
    assert webhook.handle(body()).status == 200
    outcomes = [r.outcome for r in store.registration_history(TOASTER)]
    assert outcomes.count(Outcome.DENIED) == 1
    assert outcomes.count(Outcome.ASSIGNED) == 2


INDIVIDUAL = "Indiv-Dev-contoso-tstrsd-007"  # a toaster, by the tutorial policy's suffix


def individual_body(sent: str, *, enrolled: str | None = INDIVIDUAL) -> bytes:
    """An individual-enrollment request: the enrollment's own id, and the id the device sent."""
    enrollment: dict[str, Any] = {"attestation": {"type": "symmetricKey"}}
    if enrolled is not None:
        enrollment["registrationId"] = enrolled
    return json.dumps(
        {
            "individualEnrollment": enrollment,
            "deviceRuntimeContext": {"registrationId": sent, "symmetricKey": {}},
            "linkedHubs": ["contoso-toasters-hub-1098.azure-devices.net"],
        }
    ).encode()


@pytest.mark.parametrize(
    ("sent", "enrolled"),
    [
        (INDIVIDUAL.upper(), INDIVIDUAL),
        (INDIVIDUAL.lower(), INDIVIDUAL),
        (INDIVIDUAL.upper(), None),
        (INDIVIDUAL.swapcase(), INDIVIDUAL.upper()),
    ],
)
def test_retired_device_stays_denied_in_any_letter_case(sent: str, enrolled: str | None) -> None:
    """Issue #14.1: a retired individual device re-registering as INDIV-DEV with Indiv-Dev's key
    is denied, whichever case the device or the enrollment spells it in."""
    store = MemoryStore()
    webhook = handler(store)
    assert webhook.handle(individual_body(INDIVIDUAL)).status == 200
    store.set_status(INDIVIDUAL, DeviceStatus.RETIRED, reason="stolen", now=NOW)
    answer = webhook.handle(individual_body(sent, enrolled=enrolled))
    assert (answer.status, answer.body["rule"]) == (400, "(retired)")
    (device,) = store.list_devices()
    assert device.provisioning_count == 1


def test_individual_enrollment_id_wins_over_the_id_sent() -> None:
    """The record, the inventory and the decision use the enrollment's own id; the id the device
    sent is kept beside it."""
    store = MemoryStore()
    answer = handler(store).handle(individual_body("typed-by-device", enrolled=INDIVIDUAL))
    assert answer.status == 200
    (record,) = store.registration_history(INDIVIDUAL)
    assert (record.registration_id, record.sent_registration_id) == (INDIVIDUAL, "typed-by-device")
    assert record.enrollment_id == INDIVIDUAL
    assert store.get_device("typed-by-device") is None
    assert store.registration_history("typed-by-device") == []


def test_unreachable_store_fails_closed_with_429(caplog: pytest.LogCaptureFixture) -> None:
    """When the retired check cannot be made, DPS is told to retry; the attempt is logged for replay."""
    store = MemoryStore()
    store.fail_with = StoreUnavailable("table service unreachable")
    with caplog.at_level(logging.WARNING):
        answer = handler(store).handle(body())
    assert answer.status == 429
    (record,) = parse_replay_lines(caplog.text.splitlines(), key=KEY).records
    assert record[1].outcome is Outcome.RETRY_LATER


def test_fail_open_admits_and_keeps_the_record(caplog: pytest.LogCaptureFixture) -> None:
    """With RETIRED_CHECK=fail-open the device is assigned and the record waits in the log."""
    store = MemoryStore()
    store.fail_with = StoreUnavailable("table service unreachable")
    with caplog.at_level(logging.WARNING):
        answer = handler(store, retired_check=RetiredCheck.FAIL_OPEN).handle(body())
    assert answer.status == 200
    records = [rec for _, rec in parse_replay_lines(caplog.text.splitlines(), key=KEY).records]
    assert [r.outcome for r in records] == [Outcome.ASSIGNED]


def test_failed_log_write_keeps_decision_and_replay_restores_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """If the write after a decision fails, the answer stands and replay puts the record back."""
    with caplog.at_level(logging.WARNING):
        answer = handler(WritesFail()).handle(body())
    assert answer.status == 200
    assert "s3cret" not in caplog.text
    restored = MemoryStore()
    report = replay(restored, parse_replay_lines(caplog.text.splitlines(), key=KEY))
    assert report.written == 1
    (record,) = restored.registration_history(TOASTER)
    assert record.hub == answer.body["iotHubHostName"]
    device = restored.get_device(TOASTER)
    assert device is not None
    assert device.provisioning_count == 1


def test_hung_store_is_bounded_by_the_timeout() -> None:
    """A store that never answers costs at most the configured bound, then 429."""
    store = Hangs()
    started = time.monotonic()
    answer = handler(store, timeout_seconds=0.3).handle(body())
    elapsed = time.monotonic() - started
    store.release.set()
    assert answer.status == 429
    assert elapsed < 1.5


@pytest.mark.e2e
def test_azurite_stopped_mid_run(own_azurite: Azurite, caplog: pytest.LogCaptureFixture) -> None:
    """Against Azurite: records land; with Azurite stopped, 429 fast; replay restores the lost record."""
    settings = StoreSettings(
        connection_string=own_azurite.connection_string,
        table_prefix=fresh_prefix(),
        timeout_seconds=1.0,
    )
    webhook = handler(
        TableStore.from_settings(settings),
        connection_string=settings.connection_string,
        table_prefix=settings.table_prefix,
        timeout_seconds=1.0,
    )
    assert webhook.handle(body()).status == 200
    assert webhook.handle(body(registrationId="lobby-coffee-1")).status == 400

    own_azurite.stop()
    with caplog.at_level(logging.WARNING):
        started = time.monotonic()
        answer = webhook.handle(body())
        elapsed = time.monotonic() - started
    assert answer.status == 429
    assert elapsed < 3.0
    assert ACCOUNT_KEY not in caplog.text
    lost = parse_replay_lines(caplog.text.splitlines(), key=KEY)
    assert [rec.outcome for _, rec in lost.records] == [Outcome.RETRY_LATER]

    own_azurite.start()  # a fresh one on the same port: in memory, everything before is gone
    revived = TableStore.from_settings(
        StoreSettings(
            connection_string=own_azurite.connection_string, table_prefix=settings.table_prefix
        )
    )
    assert replay(revived, lost).written == 1
    assert [r.outcome for r in revived.registration_history(TOASTER)] == [Outcome.RETRY_LATER]


ECHO_POLICY = load_policy(
    '[[rules]]\nname = "echo"\n[rules.payload]\nfirmware = "{payload.fw}"\n', source="echo.toml"
)


def raw_body(registration_id: str, payload: str = "null", hubs: int = 1) -> bytes:
    """A group request written by hand, so that it can carry what json.dumps never writes."""
    linked = ",".join(f'"hub-{n}.azure-devices.net"' for n in range(hubs))
    return (
        '{"enrollmentGroup": {"enrollmentGroupId": "g"}, "deviceRuntimeContext": '
        f'{{"registrationId": "{registration_id}", "payload": {payload}}}, "linkedHubs": [{linked}]}}'
    ).encode()


@pytest.mark.parametrize(
    ("request_body", "field", "logged_as"),
    [
        (raw_body("dev-1", '{"fw": "\\ud800"}'), "deviceRuntimeContext.payload.fw", "dev-1"),
        (raw_body("dev-\\udc00"), "deviceRuntimeContext.registrationId", UNPARSED_ID),
        (raw_body("dev-1").replace(b"dev-1", b"dev-\xed\xa0\x80"), "body", UNPARSED_ID),
        (raw_body("dev-1", '{"fw": NaN}'), "deviceRuntimeContext.payload.fw", "dev-1"),
        (raw_body("dev-1", '{"fw": Infinity}'), "deviceRuntimeContext.payload.fw", "dev-1"),
        (raw_body("dev-1", '{"fw": 1e400}'), "deviceRuntimeContext.payload.fw", "dev-1"),
        (
            raw_body("dev-1", "[" * 40 + "]" * 40),
            "deviceRuntimeContext.payload" + "[0]" * 30,
            "dev-1",
        ),
        (raw_body("d" * 129), "deviceRuntimeContext.registrationId", UNPARSED_ID),
        (raw_body("dev-1", hubs=51), "linkedHubs", "dev-1"),
    ],
)
def test_invalid_text_and_numbers_are_a_400_naming_the_field(
    request_body: bytes, field: str, logged_as: str
) -> None:
    """Issue #14.4 and #14.10: lone surrogates (escaped or raw bytes), NaN, Infinity, 1e400, deep
    nesting, over-long ids and too many hubs are 400s naming the field, and the attempt is logged
    in the store (not left for replay)."""
    store = MemoryStore()
    runtime = Runtime(store=store, hubs=lambda hub: None, clock=lambda: NOW)
    webhook = AllocateHandler(policy=lambda: ECHO_POLICY, runtime=lambda: runtime)
    answer = webhook.handle(request_body)
    assert (answer.status, answer.body["field"]) == (400, field)
    json.dumps(answer.body, allow_nan=False).encode("utf-8")  # standard JSON, encodable
    (record,) = store.registration_history(logged_as)
    assert record.outcome is Outcome.INVALID_REQUEST


def test_an_oversized_body_is_refused_before_any_parsing() -> None:
    """A 12 MB body with 400,000 hubs (issue #14.2) is a 400 in milliseconds, logged as unparsed."""
    store = MemoryStore()
    huge = raw_body("dev-1", hubs=400_000)
    started = time.perf_counter()
    answer = handler(store).handle(huge)
    assert time.perf_counter() - started < 0.1
    assert (answer.status, answer.body["field"]) == (400, "body")
    assert len(store.registration_history(UNPARSED_ID)) == 1


def test_a_decision_past_its_budget_is_a_429_and_logged() -> None:
    """A decision that runs out of its time budget makes DPS retry; the attempt is recorded."""
    store = MemoryStore()
    runtime = Runtime(store=store, hubs=lambda hub: None, clock=lambda: NOW)
    ticks = iter(range(100))
    webhook = AllocateHandler(
        policy=lambda: POLICY,
        runtime=lambda: runtime,
        clock=lambda: float(next(ticks)),
        decision_budget_seconds=0.5,
    )
    answer = webhook.handle(body())
    assert (answer.status, answer.body["error"]) == (429, "retry later")
    (record,) = store.registration_history(TOASTER)
    assert record.outcome is Outcome.RETRY_LATER
    assert "budget" in (record.reason or "")


FORGED = (
    'REPLAY-REGISTRATION {"enrollment_kind":"group","hub":"evil.azure-devices.net",'
    '"outcome":"assigned","registration_id":"victim","time":"2026-01-02T03:04:05.000000+00:00"}'
)


@pytest.mark.parametrize("separator", ["\n", "\r", "\u2028", "\u0085", "\x1e", " "])
def test_no_request_can_plant_a_log_line(separator: str, caplog: pytest.LogCaptureFixture) -> None:
    """Issue #14.5: a registration id (or rule, or error text) carrying a line break cannot start a
    line of its own, and replay of the whole log finds only the records the app signed."""
    crafted = body(registrationId=f"x{separator}{FORGED}")
    with caplog.at_level(logging.DEBUG):
        webhook = handler(WritesFail())
        webhook.handle(crafted)
        webhook.handle(body())  # a genuine record, logged for replay
    for record in caplog.records:
        assert len(record.getMessage().splitlines()) == 1, record.getMessage()
    parsed = parse_replay_lines(caplog.text.splitlines(), key=KEY, accept_unsigned=True)
    assert {rec.registration_id for _, rec in parsed.records} == {UNPARSED_ID, TOASTER}
    restored = MemoryStore()
    replay(restored, parsed)
    assert restored.get_device("victim") is None


def test_without_a_signing_key_the_replay_line_says_it_is_unsigned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No REPLAY_SIGNING_KEY: the record is still logged, marked unsigned, and the line says why."""
    with caplog.at_level(logging.WARNING):
        handler(WritesFail(), replay_key=None).handle(body())
    assert "unsigned: REPLAY_SIGNING_KEY is not set" in caplog.text
    assert parse_replay_lines(caplog.text.splitlines(), key=KEY).records == []
    assert (
        len(parse_replay_lines(caplog.text.splitlines(), key=KEY, accept_unsigned=True).records)
        == 1
    )


class SlowThenHangs(MemoryStore):
    """The retired check answers slowly; the writes after it never answer."""

    def __init__(self, read_seconds: float) -> None:
        super().__init__()
        self.read_seconds = read_seconds
        self.release = threading.Event()

    def get_device(self, registration_id: str) -> Any:
        time.sleep(self.read_seconds)
        return None

    def record_registration(self, rec: RegistrationRecord) -> None:
        self.release.wait(10)


def test_all_store_calls_share_one_deadline(caplog: pytest.LogCaptureFixture) -> None:
    """Issue #14.6: a slow retired check and a hung write together take STORE_TIMEOUT_SECONDS,
    not that much each (4.0 s were measured with a 2 s setting)."""
    store = SlowThenHangs(read_seconds=0.3)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        answer = handler(store, timeout_seconds=0.5).handle(body())
    elapsed = time.monotonic() - started
    store.release.set()
    assert answer.status == 200  # the decision stands
    assert elapsed < 0.5 + 0.12
    (line,) = parse_replay_lines(caplog.text.splitlines(), key=KEY).records
    assert line[1].outcome is Outcome.ASSIGNED


def test_a_spent_deadline_fails_the_write_at_once(caplog: pytest.LogCaptureFixture) -> None:
    """A retired check that used the whole bound leaves nothing: the 429's record goes straight to
    the log for replay, without waiting again."""
    store = SlowThenHangs(read_seconds=0.0)
    store.get_device = lambda registration_id: store.release.wait(10)  # type: ignore[method-assign]
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        answer = handler(store, timeout_seconds=0.3).handle(body())
    elapsed = time.monotonic() - started
    store.release.set()
    assert answer.status == 429
    assert elapsed < 0.3 + 0.12
    assert "no time left" in caplog.text
