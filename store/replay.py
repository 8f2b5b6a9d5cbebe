"""Registration records that could not be written, logged as one line each and replayed later.

When the log write fails after a decision, the webhook logs `format_replay_line(rec)`: the marker
`REPLAY-REGISTRATION ` followed by the record's JSON (`store.records.registration_to_dict`, one line,
keys sorted). The record holds no secret (see `store.records`), so the line is safe in the function
log. `python -m store replay <logfile>` (see `store.__main__`) finds those lines anywhere in a log
export (the marker may follow a timestamp or level prefix), and `replay` writes each record:

- a record already in the log (`Store.has_registration`) is skipped: replaying twice is harmless;
- otherwise an *assigned* record is first counted in the inventory (idempotent, see
  `store.inventory.provisioned`), then appended to the log, so a failure between the two leaves the
  record replayable again.

Lines that carry the marker but no valid record are reported with their line number, never guessed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from store.base import Store, StoreError
from store.records import (
    Outcome,
    RecordError,
    RegistrationRecord,
    registration_from_dict,
    registration_to_dict,
)

log = logging.getLogger(__name__)

REPLAY_MARKER = "REPLAY-REGISTRATION "


def format_replay_line(rec: RegistrationRecord) -> str:
    """One log line carrying the whole record, marked for replay."""
    body = json.dumps(registration_to_dict(rec), sort_keys=True, separators=(",", ":"))
    return REPLAY_MARKER + body


@dataclass(frozen=True)
class ParsedLog:
    """Records found in a log, with (line number, message) for each marked line that was unusable."""

    records: list[tuple[int, RegistrationRecord]] = field(default_factory=list)
    malformed: list[tuple[int, str]] = field(default_factory=list)


def parse_replay_lines(lines: Iterable[str]) -> ParsedLog:
    """Find every marked line and parse its record; line numbers start at 1."""
    parsed = ParsedLog()
    decoder = json.JSONDecoder()
    for number, line in enumerate(lines, start=1):
        start = line.find(REPLAY_MARKER)
        if start < 0:
            continue
        text = line[start + len(REPLAY_MARKER) :].strip()
        try:
            data, _ = decoder.raw_decode(text)
        except json.JSONDecodeError as exc:
            parsed.malformed.append((number, f"not JSON after the marker ({exc.msg})"))
            continue
        if not isinstance(data, dict):
            parsed.malformed.append((number, "expected a JSON object after the marker"))
            continue
        try:
            parsed.records.append((number, registration_from_dict(data)))
        except RecordError as exc:
            parsed.malformed.append((number, str(exc)))
    return parsed


@dataclass(frozen=True, kw_only=True)
class ReplayReport:
    """What a replay did."""

    written: int = 0
    already_present: int = 0
    failed: int = 0
    malformed: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing failed and nothing was malformed."""
        return self.failed == 0 and self.malformed == 0


def replay(store: Store, parsed: ParsedLog) -> ReplayReport:
    """Write every parsed record that is not in the store yet."""
    written = present = failed = 0
    for number, rec in parsed.records:
        try:
            if store.has_registration(rec):
                present += 1
                continue
            if rec.outcome is Outcome.ASSIGNED:
                store.record_provisioning(rec)
            store.append_registration(rec)
            written += 1
        except StoreError as exc:
            failed += 1
            log.warning("replay of line %d failed: %s", number, exc)
    return ReplayReport(
        written=written, already_present=present, failed=failed, malformed=len(parsed.malformed)
    )
