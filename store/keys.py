"""Table keys: how registration ids and times become PartitionKey/RowKey, and why.

One table, `<prefix>Registrations` (prefix from settings, so tests and deployments can share an
account), holds each device's partition:

| PartitionKey | RowKey | row | answers |
|---|---|---|---|
| escaped canonical registration id | `device` | the inventory row | the webhook's retired check: one point read |
| same | `<inverted µs>-<digest>` | one registration-log row per webhook call | history of device X, newest first: one partition query, rows already in order |

**The webhook's hot path is two round trips**: the retired check reads the device row (its etag is
remembered), then the log row and the inventory update go as one entity-group transaction in the
device's partition (`store.changeset`), so a logged record is always counted and a concurrent
change (a retire, a lifecycle event, another registration) makes the etag fail and the write
retry. A record that changes no inventory row (denied, invalid, retried, already counted) is one
upsert. These requests go below the Tables SDK (`store.rest` over `store.wire`,
docs/protocol/table-rest.md), at about a tenth of the SDK's CPU per request. Transactions need
one table and one partition: that is why the inventory lives beside the log, and why there is
no by-hour index any more (a second table cannot join the transaction, and writing it cost a
third round trip on every call).

The price, paid by the queries that are not on the hot path:

- `registrations_since(T)` (the demo, `simulator fleet --registration-log`, diagnostics) is one
  query `RowKey le inv_us(T)~` across partitions: the service answers it by scanning the table,
  and the rows are merged newest first in the caller. Its cost grows with the table, not with the
  answer (see the README's figures); the earlier by-hour index answered it from at most two
  partitions.
- `list_devices` (the admin route) filters `RowKey eq 'device'` over the same scan, so it too
  reads past every log row. Inventories and logs are small next to what a scan can serve in a
  few seconds; a deployment that keeps years of log rows should expire old ones, or build an
  index off the hot path (an Event Grid or queue-triggered function) if it needs these fast.

Inverted time: `INVERT_US - microseconds since the Unix epoch`, zero-padded to 18 digits, so the
lexical order Table storage keeps within a partition is newest first, and every log RowKey (digits)
sorts before `device`: history is `RowKey lt 'device'`, the since-query's bound never reaches it.

`<digest>` is 12 hex digits of SHA-256 over the record's canonical JSON: two different records at
the same microsecond get different keys, and the *same* record (a replay, a retry) gets the *same*
key, so writing it again is an idempotent upsert.

Registration ids: a device is keyed by its **canonical** id
(`sas.registration_id.canonical_registration_id`: NFKC, case-folded), because DPS matches ids
case-insensitively: `Indiv-Dev` and `INDIV-DEV` are one partition, one inventory row, one retired
flag. Records keep the id as it was sent; only keys and comparisons use the canonical form. DPS
documents `[A-Za-z0-9-._:]`, but the device SDKs accept any non-blank string, so keys are
**escaped reversibly** rather than rejected: `%` and every character Table storage forbids in keys
(`/ \\ # ?`, U+0000..U+001F, U+007F..U+009F) become `%XX`. An id that is empty, is not valid
Unicode text (a lone surrogate), or whose escaped form exceeds 512 characters (Azurite's limit;
Azure allows 1 KiB) is rejected with `InvalidKey` naming the field. The webhook refuses ids over
128 characters before they get here (DPS's limit), so an id it logs always fits a key.

Upgrading from the earlier design (three tables: `<prefix>Registrations` for the log,
`<prefix>RegistrationsByHour`, `<prefix>Devices` for the inventory; keys as sent, not canonical):
`python -m store migrate` (`TableStore.migrate`) merges every legacy inventory row into its
device's row here (`store.inventory.merged`: a retirement on either wins), moves log rows stored
under a non-canonical id, and deletes the two legacy tables. Until it has run, a device with no
row here is also looked up in the legacy inventory table, so a device retired before the upgrade
stays retired; that costs one extra read per device seen for the first time, and once per process
after the migration (the read that finds the legacy table gone). A device retired under a
mixed-case id (`Indiv-Dev`) is found by its other spellings only after the migration.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta

from sas.registration_id import canonical_registration_id
from store.base import InvalidKey
from store.records import RegistrationRecord, registration_to_dict

MAX_KEY_CHARS = 512
REGISTRY_TABLE = "Registrations"
LEGACY_DEVICES_TABLE = "Devices"  # before one table held both: read while upgrading, then deleted
LEGACY_HOURS_TABLE = "RegistrationsByHour"  # the by-hour index of earlier versions: deleted
DEVICE_ROW_KEY = "device"
INVERT_US = 10**18 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_ROW_KEY_UPPER = (
    "~"  # sorts after every digit, hex digit and "-": bound for "this microsecond or later"
)


def is_forbidden(ch: str) -> bool:
    """True for characters Table storage refuses in PartitionKey/RowKey."""
    code = ord(ch)
    return ch in "/\\#?" or code <= 0x1F or 0x7F <= code <= 0x9F


def escape_key(value: str, *, field: str = "registration_id") -> str:
    """Escape a user-chosen id into a valid key (`%` and forbidden characters become `%XX`); `InvalidKey` if unfit."""
    if not isinstance(value, str) or not value:
        raise InvalidKey(f"{field}: expected a non-empty string")
    if not value.isascii() and not _is_valid_unicode(value):
        raise InvalidKey(f"{field}: expected valid Unicode text, got a lone surrogate")
    escaped = _ESCAPED.sub(_percent, value)
    if len(escaped) > MAX_KEY_CHARS:
        raise InvalidKey(
            f"{field}: too long for a table key ({len(escaped)} characters after escaping, at most {MAX_KEY_CHARS})"
        )
    return escaped


# `%` and what `is_forbidden` refuses: one regex pass instead of a test per character (hot path).
_ESCAPED = re.compile(r"[%/\\#?\x00-\x1f\x7f-\x9f]")


def _percent(match: re.Match[str]) -> str:
    return f"%{ord(match.group()):02X}"


def _is_valid_unicode(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unescape_key(key: str) -> str:
    """Inverse of `escape_key`."""
    out: list[str] = []
    i = 0
    while i < len(key):
        if key[i] == "%":
            out.append(chr(int(key[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(key[i])
            i += 1
    return "".join(out)


def validate_key(key: str, *, field: str) -> str:
    """Check an already-built key against Table storage's rules; return it or raise `InvalidKey`."""
    if not key:
        raise InvalidKey(f"{field}: expected a non-empty key")
    if len(key) > MAX_KEY_CHARS:
        raise InvalidKey(f"{field}: expected at most {MAX_KEY_CHARS} characters, got {len(key)}")
    bad = next((ch for ch in key if is_forbidden(ch)), None)
    if bad is not None:
        raise InvalidKey(f"{field}: forbidden character U+{ord(bad):04X} in a table key")
    return key


def inverted_time(time: datetime) -> str:
    """18-digit key text that sorts newest first."""
    micros = (time - _EPOCH) // _US
    if micros < 0:
        raise InvalidKey(f"time: expected a time after 1970-01-01, got {time.isoformat()}")
    return f"{INVERT_US - micros:018d}"


def record_digest(rec: RegistrationRecord) -> str:
    """12 hex digits identifying the record's content (same record, same digest)."""
    canonical = json.dumps(registration_to_dict(rec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def registration_row_key(rec: RegistrationRecord) -> str:
    """RowKey of a record in both registration tables."""
    return f"{inverted_time(rec.time)}-{record_digest(rec)}"


def registration_partition_key(registration_id: str) -> str:
    """PartitionKey of the registration log (and of the device row): the canonical id, escaped."""
    if not isinstance(registration_id, str):
        raise InvalidKey("registration_id: expected a non-empty string")
    return escape_key(canonical_registration_id(registration_id))


def since_row_key(since: datetime) -> str:
    """RowKey upper bound selecting every log row at or after `since` (and no device row)."""
    return inverted_time(since) + _ROW_KEY_UPPER
