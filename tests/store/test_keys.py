"""Key design: reversible escaping, validation, newest-first ordering and the `since` bounds."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store import keys
from store.base import InvalidKey
from store.records import RegistrationRecord
from tests.store.strategies import any_ids, registration_records, utc_times


@given(any_ids())
def test_escape_round_trips(value: str) -> None:
    """Unescaping an escaped id gives the id back."""
    assert keys.unescape_key(keys.escape_key(value)) == value


@given(any_ids())
def test_escaped_key_is_valid(value: str) -> None:
    """An escaped id contains no forbidden character."""
    escaped = keys.escape_key(value)
    assert keys.validate_key(escaped, field="PartitionKey") == escaped


@given(any_ids(), any_ids())
def test_escaping_is_injective(a: str, b: str) -> None:
    """Two different ids never share a key."""
    assert (keys.escape_key(a) == keys.escape_key(b)) == (a == b)


def test_plain_dps_ids_are_unchanged() -> None:
    """Ids made of DPS's documented characters stay readable in the table."""
    assert keys.escape_key("SAS-IoT-Devices_1.2:3") == "SAS-IoT-Devices_1.2:3"


@pytest.mark.parametrize(
    ("char", "forbidden"),
    [("/", True), ("\\", True), ("#", True), ("?", True), ("\x00", True), ("\x1f", True),
     ("\x7f", True), ("\x9f", True), ("\xa0", False), (" ", False), ("%", False), ("'", False)],
)  # fmt: skip
def test_forbidden_characters(char: str, forbidden: bool) -> None:
    """Exactly the characters Table storage forbids are flagged."""
    assert keys.is_forbidden(char) is forbidden


def test_validate_rejects_forbidden_and_long_keys() -> None:
    """validate_key names the field and the problem."""
    with pytest.raises(InvalidKey, match=r"RowKey: forbidden character U\+002F"):
        keys.validate_key("a/b", field="RowKey")
    with pytest.raises(InvalidKey, match="PartitionKey: expected at most 512"):
        keys.validate_key("x" * 513, field="PartitionKey")
    with pytest.raises(InvalidKey, match="PartitionKey: expected a non-empty key"):
        keys.validate_key("", field="PartitionKey")


def test_escape_limits() -> None:
    """Empty ids and ids too long after escaping are rejected; 512 escaped characters are fine."""
    with pytest.raises(InvalidKey, match="registration_id: expected a non-empty string"):
        keys.escape_key("")
    assert len(keys.escape_key("x" * 512)) == 512
    with pytest.raises(InvalidKey, match="after escaping"):
        keys.escape_key("#" * 171)  # 513 characters escaped


@given(utc_times(), utc_times())
def test_inverted_time_sorts_newest_first(a: datetime, b: datetime) -> None:
    """Lexical key order is reverse time order."""
    if a < b:
        assert keys.inverted_time(a) > keys.inverted_time(b)
    assert len(keys.inverted_time(a)) == 18


@given(registration_records(), utc_times())
def test_since_row_key_selects_exactly_later_records(
    rec: RegistrationRecord, since: datetime
) -> None:
    """A record's RowKey is within the bound iff its time is at or after `since`; the device row
    never is."""
    bound = keys.since_row_key(since)
    assert (keys.registration_row_key(rec) <= bound) == (rec.time >= since)
    assert bound < keys.DEVICE_ROW_KEY


@given(registration_records(), st.integers(min_value=1, max_value=10**6))
def test_digest_identifies_content(rec: RegistrationRecord, micros: int) -> None:
    """Same record, same row key; a different time, a different row key."""
    assert keys.registration_row_key(rec) == keys.registration_row_key(replace(rec))
    later = replace(rec, time=rec.time + timedelta(microseconds=micros))
    assert keys.registration_row_key(later) != keys.registration_row_key(rec)
