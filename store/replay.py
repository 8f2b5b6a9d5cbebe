"""Registration records that could not be written, logged as one signed line each and replayed later.

When the log write fails after a decision, the webhook logs `format_replay_line(rec, key=...)`:

    REPLAY-REGISTRATION hmac-sha256=<43 characters of base64url> {"decision_ms": ..., ...}

the marker, an HMAC-SHA256 of the JSON text under the app setting `REPLAY_SIGNING_KEY`
(`store.settings`), then the record's JSON (`store.records.registration_to_dict`, one line, keys
sorted, ASCII). Without a key the tag is `unsigned`. The record holds no secret (see
`store.records`), so the line is safe in the function log.

Only lines the app wrote are replayed. Log values are escaped (`store.logline`) so none can start a
line of its own, and the signature proves a line came from an app holding the key: a forged line
(one that once could be planted through a registration id with a newline in it, pointing another
device's inventory row at an attacker's hub) fails the check. `parse_replay_lines` sorts every
marked line into

- `records`: signed lines whose signature checks, and unsigned ones only with `accept_unsigned`
  (the operator read them: the app had no key when it wrote them, or they predate signing);
- `refused`: a bad or uncheckable signature, or unsigned without `accept_unsigned`;
- `malformed`: the marker without a record after it;

each refused or malformed line with its number and why. `python -m store replay <logfile>` (see
`store.__main__`) prints every refused line and exits 1 if there is one. `replay` writes each
record:

- a record already in the log (`Store.has_registration`) is skipped: replaying twice is harmless;
- otherwise it is written as the webhook writes it (`Store.record_registration`: the log record and,
  for an assigned one, its count in the inventory, atomically on Table storage; counting is
  idempotent, see `store.inventory.provisioned`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from store.base import Store, StoreError
from store.logline import Quoted
from store.records import (
    RecordError,
    RegistrationRecord,
    registration_from_dict,
    registration_to_dict,
)
from store.settings import REPLAY_KEY_SETTING

log = logging.getLogger(__name__)

REPLAY_MARKER = "REPLAY-REGISTRATION "
SIGNED = "hmac-sha256="
UNSIGNED = "unsigned"


def format_replay_line(rec: RegistrationRecord, *, key: bytes | None) -> str:
    """One log line carrying the whole record, marked for replay and signed with ``key``."""
    body = json.dumps(registration_to_dict(rec), sort_keys=True, separators=(",", ":"))
    tag = SIGNED + _signature(key, body) if key else UNSIGNED
    return f"{REPLAY_MARKER}{tag} {body}"


def _signature(key: bytes, body: str) -> str:
    digest = hmac.new(key, body.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class ParsedLog:
    """Records found in a log; (line number, why) for each marked line refused or malformed."""

    records: list[tuple[int, RegistrationRecord]] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    malformed: list[tuple[int, str]] = field(default_factory=list)


def parse_replay_lines(
    lines: Iterable[str], *, key: bytes | None, accept_unsigned: bool = False
) -> ParsedLog:
    """Find every marked line, check its signature and parse its record; lines count from 1."""
    parsed = ParsedLog()
    decoder = json.JSONDecoder()
    for number, line in enumerate(lines, start=1):
        start = line.find(REPLAY_MARKER)
        if start < 0:
            continue
        text = line[start + len(REPLAY_MARKER) :].strip()
        tag, _, rest = text.partition(" ")
        if tag.startswith(SIGNED) or tag == UNSIGNED:
            text = rest.strip()
        else:
            tag = UNSIGNED  # written before lines were signed
        try:
            data, end = decoder.raw_decode(text)
        except json.JSONDecodeError as exc:
            parsed.malformed.append((number, f"not JSON after the marker ({exc.msg})"))
            continue
        refusal = _refusal(tag, text[:end], key, accept_unsigned)
        if refusal is not None:
            parsed.refused.append((number, refusal))
            continue
        if not isinstance(data, dict):
            parsed.malformed.append((number, "expected a JSON object after the marker"))
            continue
        try:
            parsed.records.append((number, registration_from_dict(data)))
        except RecordError as exc:
            parsed.malformed.append((number, str(exc)))
    return parsed


def _refusal(tag: str, body: str, key: bytes | None, accept_unsigned: bool) -> str | None:
    """Why a line may not be replayed, or None."""
    if tag == UNSIGNED:
        if accept_unsigned:
            return None
        return "unsigned: check the line, then replay with --accept-unsigned"
    if key is None:
        return f"signed, but {REPLAY_KEY_SETTING} is not set here, so it cannot be checked"
    if not hmac.compare_digest(tag[len(SIGNED) :], _signature(key, body)):
        return (
            "the signature does not match: not written by this app, "
            f"or signed with another {REPLAY_KEY_SETTING}"
        )
    return None


@dataclass(frozen=True, kw_only=True)
class ReplayReport:
    """What a replay did."""

    written: int = 0
    already_present: int = 0
    failed: int = 0
    malformed: int = 0
    refused: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing failed, and nothing was malformed or refused."""
        return self.failed == 0 and self.malformed == 0 and self.refused == 0


def replay(store: Store, parsed: ParsedLog) -> ReplayReport:
    """Write every parsed record that is not in the store yet."""
    written = present = failed = 0
    for number, rec in parsed.records:
        try:
            if store.has_registration(rec):
                present += 1
                continue
            store.record_registration(rec)
            written += 1
        except StoreError as exc:
            failed += 1
            log.warning("replay of line %d failed: %s", number, Quoted(str(exc)))
    return ReplayReport(
        written=written,
        already_present=present,
        failed=failed,
        malformed=len(parsed.malformed),
        refused=len(parsed.refused),
    )
