"""DPS's error for a failed registration, read from the SDK's DEBUG log line, and its likely cause."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.dps.allocation import Failed, Retry, exhausted_outcome, webhook_outcome
from emulator.dps.codes import DpsErrorCode
from emulator.dps.wire import Operation, RegistrationStatus, operation_body, reply_topic
from simulator import dps_replies
from simulator.dps_replies import SDK_LOGGER, DpsError, DpsReplies, likely_cause
from tests.strategies import registration_ids

STAMP = "2026-01-02T03:04:05.0000000Z"


def sdk_line(
    payload: bytes, topic: str = "$dps/registrations/res/200/?$rid=1"
) -> logging.LogRecord:
    """The record the SDK's provisioning MQTT stage logs for a DPS reply, formatted as it does."""
    return logging.LogRecord(
        SDK_LOGGER, logging.DEBUG, __file__, 126, sdk_message(payload, topic), None, None
    )


def sdk_message(payload: bytes, topic: str) -> str:
    """The SDK's words: `"Received payload:{payload} on topic:{topic}".format(...)` of bytes."""
    return f"Received payload:{payload!s} on topic:{topic}"


def reply(registration_id: str, status: RegistrationStatus, failed: Failed | None = None) -> bytes:
    """DPS's reply body for a finished operation, as the emulator's DPS writes it."""
    return operation_body(
        Operation(
            operation_id="4.0123456789abcdef.00000000-0000-0000-0000-000000000000",
            registration_id=registration_id,
            status=status,
            created=STAMP,
            last_updated=STAMP,
            error_code=failed.error_code if failed else None,
            error_message=failed.message if failed else None,
        )
    )


DENIED = Failed(400207, "Custom allocation failed with status code: 400")


def test_a_failed_reply_is_remembered_by_registration_id_in_any_case() -> None:
    """The error code and message of a failed reply are kept, found case-insensitively."""
    replies = DpsReplies()
    replies.emit(sdk_line(reply("Dev-001", RegistrationStatus.FAILED, DENIED)))
    assert replies.error("dev-001") == DpsError(400207, DENIED.message)
    assert replies.error("DEV-001") == replies.error("Dev-001")
    assert str(replies.error("dev-001")) == f"400207 {DENIED.message}"
    assert replies.error("dev-002") is None


def test_the_latest_failure_replaces_an_earlier_one() -> None:
    """Two failed replies for one id: the second one is what is kept."""
    replies = DpsReplies()
    replies.emit(sdk_line(reply("dev-1", RegistrationStatus.FAILED, DENIED)))
    unauthorized = webhook_outcome(401, b"", [])
    assert isinstance(unauthorized, Failed)
    replies.emit(sdk_line(reply("DEV-1", RegistrationStatus.FAILED, unauthorized)))
    assert replies.error("dev-1") == DpsError(400209, unauthorized.message)


def test_messages_with_quotes_and_non_ascii_survive_the_bytes_repr() -> None:
    """A message with a quote (repr b"...") or non-ASCII text (\\x escapes) is read back whole."""
    replies = DpsReplies()
    message = "the device's rule «pnp» refused it"
    replies.emit(sdk_line(reply("dev-1", RegistrationStatus.FAILED, Failed(400207, message))))
    assert replies.error("dev-1") == DpsError(400207, message)


@pytest.mark.parametrize(
    "record",
    [
        sdk_line(b'{"operationId": "4.0.x", "status": "assigning"}', reply_topic(202, "1")),
        sdk_line(reply("dev-1", RegistrationStatus.ASSIGNED)),
        sdk_line(reply("dev-1", RegistrationStatus.DISABLED)),
        sdk_line(b"not json at all"),
        sdk_line(b"[1, 2, 3]"),
        sdk_line(b'{"registrationState": "failed"}'),
        sdk_line(b'{"registrationState": {"registrationId": "dev-1", "errorCode": "400207"}}'),
        sdk_line(b'{"registrationState": {"registrationId": 7, "errorCode": 400207}}'),
        sdk_line(b'{"errorCode": 401002, "message": "Unauthorized"}', reply_topic(401, "1")),
        logging.LogRecord(SDK_LOGGER, logging.DEBUG, __file__, 1, "Sending PUBLISH", None, None),
        logging.LogRecord(
            SDK_LOGGER, logging.DEBUG, __file__, 1, "Received payload:%s on topic:%s", (1, 2), None
        ),
        logging.LogRecord(
            SDK_LOGGER,
            logging.DEBUG,
            __file__,
            1,
            "Received payload:b'{\"registrationState\": {' on topic:$dps/x",
            None,
            None,
        ),
    ],
)
def test_replies_without_a_registration_error_and_garbage_are_ignored(
    record: logging.LogRecord,
) -> None:
    """Assigning, assigned and disabled replies, other lines and malformed payloads keep nothing."""
    replies = DpsReplies()
    replies.emit(record)
    assert replies.error("dev-1") is None
    assert replies.error("7") is None


def test_a_later_success_does_not_erase_the_last_failure() -> None:
    """An assigned reply after a failure keeps the failure: it is the last *failed* reply."""
    replies = DpsReplies()
    replies.emit(sdk_line(reply("dev-1", RegistrationStatus.FAILED, DENIED)))
    replies.emit(sdk_line(reply("dev-1", RegistrationStatus.ASSIGNED)))
    assert replies.error("dev-1") == DpsError(400207, DENIED.message)


@given(registration_ids(), st.integers(100_000, 599_999), st.text(max_size=60))
def test_any_failed_reply_round_trips(registration_id: str, code: int, message: str) -> None:
    """Whatever the id, code and message, the error read is the error DPS sent."""
    replies = DpsReplies()
    replies.emit(sdk_line(reply(registration_id, RegistrationStatus.FAILED, Failed(code, message))))
    assert replies.error(registration_id.upper()) == DpsError(code, message)


def test_memory_is_bounded_oldest_failure_first() -> None:
    """Past MAX_KEPT ids the least recently failed one is forgotten; a fresh failure is kept."""
    replies = DpsReplies()
    payload = json.dumps(
        {"registrationState": {"registrationId": "{id}", "errorCode": 400207, "errorMessage": "x"}}
    )
    for number in range(dps_replies.MAX_KEPT):
        replies.emit(sdk_line(payload.replace("{id}", f"d{number}").encode()))
    replies.emit(sdk_line(payload.replace("{id}", "d0").encode()))  # d0 fails again: now newest
    replies.emit(sdk_line(payload.replace("{id}", "one-more").encode()))
    kept = [f"d{number}" for number in range(dps_replies.MAX_KEPT)] + ["one-more"]
    assert [name for name in kept if replies.error(name) is None] == ["d1"]


@pytest.fixture
def installed() -> Iterator[DpsReplies]:
    """DpsReplies on the SDK's logger; the logger's handlers, level and propagation put back."""
    logger = logging.getLogger(SDK_LOGGER)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield DpsReplies.install()
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


class Heard(logging.Handler):
    """A root-logger handler that keeps every message it is handed."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_install_hooks_the_sdk_logger_once_and_hears_its_debug_lines(
    installed: DpsReplies,
) -> None:
    """install() is idempotent; the SDK's DEBUG reply reaches it and no root handler."""
    assert DpsReplies.install() is installed
    logger = logging.getLogger(SDK_LOGGER)
    assert [h for h in logger.handlers if isinstance(h, DpsReplies)] == [installed]
    root, heard = logging.getLogger(), Heard()
    root.addHandler(heard)
    try:
        logger.debug(
            "%s",
            sdk_message(reply("dev-9", RegistrationStatus.FAILED, DENIED), reply_topic(200, "3")),
        )
    finally:
        root.removeHandler(heard)
    assert installed.error("dev-9") == DpsError(400207, DENIED.message)
    assert heard.messages == []


# --- likely_cause -------------------------------------------------------------------------------


def outcome(failed: object) -> tuple[int, str]:
    assert isinstance(failed, Failed)
    return failed.error_code, failed.message


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (outcome(webhook_outcome(401, b"", [])), "function key"),
        (outcome(webhook_outcome(200, b'{"iotHubHostName": ""}', ["h"])), "iotHubHostName empty"),
        (outcome(webhook_outcome(400, b'{"error": "denied"}', ["h"])), "policy refused"),
        (outcome(exhausted_outcome(Retry(429))), "AzureWebJobsStorage"),
        (outcome(exhausted_outcome(Retry(503))), "ALLOCATION_POLICY_FILE"),
        (outcome(webhook_outcome(404, b"", ["h"])), "expected /api/allocate"),
        (outcome(exhausted_outcome(Retry(500))), "read the Functions app's log"),
        (outcome(exhausted_outcome(Retry(502))), "read the Functions app's log"),
        (outcome(exhausted_outcome(Retry(None))), "is the Functions app running?"),
        (
            outcome(webhook_outcome(200, b'{"iotHubHostName": "other"}', ["h"])),
            "not linked to the enrollment",
        ),
        (outcome(webhook_outcome(200, b"{", ["h"])), "did not assign the device"),
        ((401002, "Unauthorized"), "refused the credentials"),
        ((400012, "Deserialization error."), "inside payload"),
        ((404202, "Registration operation not found."), "register again"),
        ((429001, "Operations are being throttled"), "retry-after"),
        ((409001, "Conflict"), "provisioning documentation"),
        ((None, ""), "provisioning documentation"),
    ],
)
def test_likely_cause_of_each_error_dps_gives(error: tuple[int | None, str], expected: str) -> None:
    """Each of DPS's errors (as the emulator's DPS words them) maps to what to look at."""
    assert expected in likely_cause(*error)


def test_every_code_the_emulators_dps_sends_has_its_own_explanation() -> None:
    """The simulator explains each of DPS's codes the emulator uses (the two stay in step)."""
    generic = likely_cause(None)
    for code in DpsErrorCode:
        assert likely_cause(int(code), "Custom allocation failed with status code: 400") != generic


def test_throttled_replies_are_counted_and_nothing_else_is() -> None:
    """Each 429 reply (register or poll, DPS's throttling body) counts once; a 202 and a
    failed 200 do not."""
    replies = DpsReplies()
    throttled = b'{"errorCode":429001,"trackingId":"","message":"Operations are being throttled."}'
    replies.emit(sdk_line(throttled, "$dps/registrations/res/429/?$rid=1&retry-after=3"))
    replies.emit(sdk_line(throttled, "$dps/registrations/res/429/?$rid=2&retry-after=1"))
    replies.emit(
        sdk_line(b'{"operationId":"x","status":"assigning"}', "$dps/registrations/res/202/?$rid=3")
    )
    replies.emit(sdk_line(reply("dev", RegistrationStatus.FAILED, DENIED)))
    assert replies.throttled == 2
    assert replies.error("dev") == DpsError(400207, DENIED.message)
