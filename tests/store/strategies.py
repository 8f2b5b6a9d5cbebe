"""Hypothesis strategies for the store tests (records, ids with forbidden characters, connection sequences)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from store.records import EnrollmentKind, Outcome, RegistrationRecord


def utc_times() -> st.SearchStrategy[datetime]:
    """UTC datetimes between 2000 and 2100 with microsecond precision."""
    return st.datetimes(
        min_value=datetime(2000, 1, 1),  # hypothesis bounds are naive; the zone is added below
        max_value=datetime(2100, 1, 1),
        timezones=st.just(UTC),
    )


def any_ids() -> st.SearchStrategy[str]:
    """Non-empty ids of any characters, forbidden table-key characters included."""
    return st.text(min_size=1, max_size=64)


def optional_text() -> st.SearchStrategy[str | None]:
    """None or short text."""
    return st.none() | st.text(max_size=40)


def registration_records() -> st.SearchStrategy[RegistrationRecord]:
    """Any valid registration record."""
    return st.builds(
        RegistrationRecord,
        time=utc_times(),
        registration_id=any_ids(),
        device_id=optional_text(),
        enrollment_kind=st.sampled_from(EnrollmentKind),
        enrollment_id=optional_text(),
        outcome=st.sampled_from(Outcome),
        hub=optional_text(),
        rule=optional_text(),
        strategy=optional_text(),
        reprovision=st.booleans(),
        previous_hub=optional_text(),
        payload_size=st.integers(min_value=0, max_value=2**31 - 1),
        payload_keys=st.lists(st.text(max_size=10), max_size=5).map(tuple),
        decision_ms=st.floats(min_value=0, max_value=1e6, allow_nan=False),
        reason=optional_text(),
        sent_registration_id=st.none() | st.text(min_size=1, max_size=20),
    )


def sequence_numbers() -> st.SearchStrategy[str]:
    """Hub connection sequence numbers: fixed-width hex strings, so string order is numeric order."""
    return st.integers(min_value=1, max_value=2**64).map(lambda n: f"{n:064X}")


def offsets() -> st.SearchStrategy[timedelta]:
    """Small positive time offsets."""
    return st.integers(min_value=0, max_value=10_000).map(lambda s: timedelta(seconds=s))
