"""Table keys: how registration ids and times become PartitionKey/RowKey, and why.

Three tables, each named `<prefix><Name>` (prefix from settings, so tests and deployments can share
an account):

| table | PartitionKey | RowKey | answers |
|---|---|---|---|
| `<prefix>Registrations` | escaped registration id | `<inverted µs>-<digest>` | history of device X, newest first: one partition, rows already in order, `top=N` |
| `<prefix>RegistrationsByHour` | inverted UTC hour | `<inverted µs>-<digest>` | registrations since T, newest first: one range query |
| `<prefix>Devices` | escaped registration id | `device` | the inventory row; point read for the webhook's retired check |

Inverted time: `INVERT_US - microseconds since the Unix epoch`, zero-padded to 18 digits, so the
lexical order Table storage keeps within a partition is newest first. The by-hour index uses the
same trick on the partition: PartitionKey = `INVERT_HOUR - YYYYMMDDHH`. Since both keys are inverted
*globally* (not per partition), one query `PartitionKey le inv_hour(T) and RowKey le inv_us(T)~`
walks the newest hour first and stops at T: "the last hour" touches at most two partitions and
returns rows already sorted, with no client-side merge. A readable `hour` property is kept on each
index row for people browsing the table. The price is one extra write per registration (two tables
cannot share a transaction); `append_registration` writes the log row first, and a failed second
write surfaces as an error so the caller logs the record for replay, and replay is an idempotent
upsert of both rows. All writes of the current hour land in one index partition: Table storage
serves about 2,000 entities/s per partition and DPS allows 1,000 registrations per minute per
service, so that is not a hot spot.

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

Migration: rows written before keys were canonical sit under the id as it was sent (mixed case).
`python -m store migrate` moves them to their canonical keys, merging rows of one device
(`store.inventory.merged`: a retirement on either row wins); see `store.migrate`.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

from sas.registration_id import canonical_registration_id
from store.base import InvalidKey
from store.records import RegistrationRecord, registration_to_dict

MAX_KEY_CHARS = 512
DEVICE_ROW_KEY = "device"
INVERT_US = 10**18 - 1
INVERT_HOUR = 10**10 - 1
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
    escaped = "".join(f"%{ord(ch):02X}" if ch == "%" or is_forbidden(ch) else ch for ch in value)
    if len(escaped) > MAX_KEY_CHARS:
        raise InvalidKey(
            f"{field}: too long for a table key ({len(escaped)} characters after escaping, at most {MAX_KEY_CHARS})"
        )
    return escaped


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


def hour_bucket(time: datetime) -> str:
    """Readable UTC hour `YYYYMMDDHH`."""
    return time.astimezone(UTC).strftime("%Y%m%d%H")


def inverted_hour(time: datetime) -> str:
    """10-digit PartitionKey of the by-hour index: newest hour sorts first."""
    return f"{INVERT_HOUR - int(hour_bucket(time)):010d}"


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


def since_bounds(since: datetime) -> tuple[str, str]:
    """(PartitionKey upper bound, RowKey upper bound) selecting every index row at or after `since`."""
    return inverted_hour(since), inverted_time(since) + _ROW_KEY_UPPER
