"""Replay lines: format, parse from a noisy log, idempotent replay, and the `python -m store replay` command."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given

from store.__main__ import main
from store.base import StoreUnavailable
from store.memory import MemoryStore
from store.records import Outcome, RegistrationRecord
from store.replay import REPLAY_MARKER, format_replay_line, parse_replay_lines, replay
from tests.store.strategies import registration_records

T0 = datetime(2025, 2, 3, 4, 5, 6, 789, tzinfo=UTC)
KEY = b"replay-signing-key-of-32-chars!!"
ENV = {"REPLAY_SIGNING_KEY": KEY.decode()}


def rec(n: int, outcome: Outcome = Outcome.ASSIGNED) -> RegistrationRecord:
    """Record n of device d1."""
    return RegistrationRecord(
        time=T0 + timedelta(seconds=n),
        registration_id="d1",
        outcome=outcome,
        hub="hub-a.azure-devices.net" if outcome is Outcome.ASSIGNED else None,
        payload_keys=("k",),
        decision_ms=1.25,
    )


@given(registration_records())
def test_line_round_trips(record: RegistrationRecord) -> None:
    """A formatted line is one line and parses back to the same record."""
    line = format_replay_line(record, key=KEY)
    assert len(line.splitlines()) == 1
    assert line.isascii()
    assert line.startswith(REPLAY_MARKER)
    parsed = parse_replay_lines([line], key=KEY)
    assert parsed.records == [(1, record)]
    assert parsed.malformed == parsed.refused == []


def test_parse_finds_marked_lines_in_a_noisy_log() -> None:
    """Prefixes, trailing text and unrelated lines are tolerated; malformed marked lines are reported."""
    lines = [
        "2025-02-03T04:05:06Z [Information] Executing 'allocate'",
        "2025-02-03T04:05:07Z [Warning] " + format_replay_line(rec(1), key=KEY) + " (trailing)",
        "REPLAY-REGISTRATION {not json",
        'REPLAY-REGISTRATION {"registration_id": "x"}',
        "REPLAY-REGISTRATION [1, 2]",
        format_replay_line(rec(2), key=KEY),
    ]
    parsed = parse_replay_lines(lines, key=KEY, accept_unsigned=True)
    assert [(n, r.time) for n, r in parsed.records] == [(2, rec(1).time), (6, rec(2).time)]
    assert [n for n, _ in parsed.malformed] == [3, 4, 5]
    assert "time: required" in parsed.malformed[1][1]


def test_replay_writes_log_and_inventory_once() -> None:
    """Replaying twice writes each record once and counts each assigned one once."""
    store = MemoryStore()
    parsed = parse_replay_lines(
        [format_replay_line(r, key=KEY) for r in (rec(1), rec(2), rec(3, Outcome.DENIED))],
        key=KEY,
    )
    first = replay(store, parsed)
    assert (first.written, first.already_present, first.failed) == (3, 0, 0)
    second = replay(store, parsed)
    assert (second.written, second.already_present, second.failed) == (0, 3, 0)
    assert len(store.registration_history("d1")) == 3
    device = store.get_device("d1")
    assert device is not None
    assert device.provisioning_count == 2


def test_replay_counts_failures() -> None:
    """Records that cannot be written are counted as failed, not lost silently."""
    store = MemoryStore()
    store.fail_with = StoreUnavailable("down")
    report = replay(store, parse_replay_lines([format_replay_line(rec(1), key=KEY)], key=KEY))
    assert (report.written, report.failed, report.ok) == (0, 1, False)


def test_command_replays_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m store replay FILE` writes the records and exits 0; a second run finds them present."""
    log = tmp_path / "function.log"
    log.write_text(
        "\n".join(["noise", *(format_replay_line(rec(n), key=KEY) for n in (1, 2))]) + "\n"
    )
    store = MemoryStore()
    assert main(["replay", str(log)], env=ENV, make_store=lambda _: store) == 0
    assert len(store.registration_history("d1")) == 2
    assert main(["replay", str(log)], env=ENV, make_store=lambda _: store) == 0
    out = capsys.readouterr().out
    assert "written 2" in out
    assert "already present 2" in out


def test_command_errors(tmp_path: Path) -> None:
    """Missing file or storage setting exits 2; malformed lines exit 1."""
    assert main(["replay", str(tmp_path / "missing.log")], env={}) == 2
    log = tmp_path / "bad.log"
    log.write_text("REPLAY-REGISTRATION {oops\n")
    assert main(["replay", "--dry-run", str(log)], env={}) == 1
    assert main(["replay", str(log)], env={}) == 2  # no AzureWebJobsStorage


def forged_line(registration_id: str, hub: str) -> str:
    """What an attacker plants: a well-formed record, with no key to sign it."""
    forged = RegistrationRecord(
        time=T0, registration_id=registration_id, outcome=Outcome.ASSIGNED, hub=hub
    )
    return format_replay_line(forged, key=b"a key the attacker made up, not ours")


def test_only_lines_signed_with_the_key_are_replayed() -> None:
    """Issue #14.5: a forged line (another key, no key, an edited record) is refused with its
    line number; a genuine one is replayed."""
    genuine = format_replay_line(rec(1), key=KEY)
    edited = genuine.replace("hub-a.azure-devices.net", "evil.azure-devices.net")
    lines = [
        genuine,
        forged_line("victim", "evil.azure-devices.net"),
        format_replay_line(rec(2), key=None),
        edited,
        "REPLAY-REGISTRATION " + genuine.split(" ", 2)[2],  # the pre-signing format
    ]
    parsed = parse_replay_lines(lines, key=KEY)
    assert [n for n, _ in parsed.records] == [1]
    assert [n for n, _ in parsed.refused] == [2, 3, 4, 5]
    assert "signature does not match" in parsed.refused[0][1]
    assert "unsigned" in parsed.refused[1][1]
    unsigned_ok = parse_replay_lines(lines, key=KEY, accept_unsigned=True)
    assert [n for n, _ in unsigned_ok.records] == [1, 3, 5]
    assert "cannot be checked" in parse_replay_lines([genuine], key=None).refused[0][1]


def test_command_refuses_forged_lines_loudly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command writes the genuine record, names the forged line on stderr and exits 1; the
    victim's inventory row is untouched."""
    store = MemoryStore()
    log = tmp_path / "function.log"
    log.write_text(
        "\n".join([format_replay_line(rec(1), key=KEY), forged_line("victim", "evil.net")]) + "\n"
    )
    assert main(["replay", str(log)], env=ENV, make_store=lambda _: store) == 1
    captured = capsys.readouterr()
    assert f"{log}:2: REFUSED, not replayed: the signature does not match" in captured.err
    assert "refused lines 1" in captured.out
    assert len(store.registration_history("d1")) == 1
    assert store.get_device("victim") is None


def test_unsigned_lines_need_the_operator_to_accept_them(tmp_path: Path) -> None:
    """Lines the app wrote without a key replay only with --accept-unsigned."""
    store = MemoryStore()
    log = tmp_path / "function.log"
    log.write_text(format_replay_line(rec(1), key=None) + "\n")
    assert main(["replay", str(log)], env=ENV, make_store=lambda _: store) == 1
    assert store.registration_history("d1") == []
    assert main(["replay", "--accept-unsigned", str(log)], env={}, make_store=lambda _: store) == 0
    assert len(store.registration_history("d1")) == 1
