"""Tests for emulator.quotas.limits: token buckets, poll windows, admission and the `[quotas]` table."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.quotas.limits import (
    Kind,
    QuotaError,
    Quotas,
    QuotaSettings,
    TokenBucket,
    parse_quotas,
)

NOW = 1_700_000_000.0
HUB = "toasters.azure-devices.net"


def quotas(time_scale: float = 1.0, **settings: object) -> Quotas:
    return Quotas(
        QuotaSettings(**settings),  # type: ignore[arg-type]
        (HUB,),
        now=NOW,
        time_scale=time_scale,
    )


def test_token_bucket_grants_its_capacity_then_says_when_the_next_token_comes() -> None:
    """Full at start; empty, the wait is what the refill rate needs for one token."""
    bucket = TokenBucket(2.0, 3, now=NOW)
    assert [bucket.take(NOW) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(NOW) == pytest.approx(0.5)
    assert bucket.take(NOW + 0.5) == 0.0
    assert bucket.take(NOW + 0.5) == pytest.approx(0.5)


def test_token_bucket_never_holds_more_than_its_capacity() -> None:
    """An hour idle refills the bucket to its capacity, no further."""
    bucket = TokenBucket(1.0, 2, now=NOW)
    granted = [bucket.take(NOW + 3600) for _ in range(3)]
    assert granted[:2] == [0.0, 0.0]
    assert granted[2] > 0


def test_dps_registrations_hold_a_minutes_quota_then_answer_429_with_retry_after() -> None:
    """60/min: 60 at once, the 61st refused for about a second; refused ones take no token."""
    limits = quotas(dps_registrations_per_minute=60)
    assert all(limits.register(NOW, assigning=0) is None for _ in range(60))
    assert limits.register(NOW, assigning=0) == 1
    assert limits.register(NOW + 0.2, assigning=0) == 1
    assert limits.register(NOW + 1.0, assigning=0) is None
    assert limits.refused[Kind.DPS_REGISTRATIONS] == 2


def test_dps_registrations_beyond_max_assigning_wait_dps_polling_interval() -> None:
    """With as many allocations running as allowed, a register is refused, retry-after 3 s
    (scaled like DPS's other timings, never below 1)."""
    assert quotas(dps_max_assigning=2).register(NOW, assigning=2) == 3
    assert quotas(dps_max_assigning=2).register(NOW, assigning=1) is None
    assert quotas(0.1, dps_max_assigning=2).register(NOW, assigning=5) == 1


def test_a_device_may_poll_five_times_in_ten_seconds() -> None:
    """The sixth poll within 10 s is refused until the first leaves the window; other devices
    are not affected; case does not make another device."""
    limits = quotas()
    assert all(limits.poll("dev-1", NOW + n) is None for n in range(5))
    assert limits.poll("DEV-1", NOW + 5) == 5
    assert limits.poll("dev-2", NOW + 5) is None
    assert limits.poll("dev-1", NOW + 10) is None
    assert limits.refused[Kind.DPS_POLLS] == 1


def test_the_poll_window_shrinks_with_the_time_scale() -> None:
    """time_scale 0.1: five polls per second."""
    limits = quotas(0.1)
    assert all(limits.poll("d", NOW + n * 0.01) is None for n in range(5))
    assert limits.poll("d", NOW + 0.05) == 1
    assert limits.poll("d", NOW + 1.01) is None


def test_hub_connections_are_refused_over_their_rate() -> None:
    """2/s: two at once, the third refused, admitted again half a second later; hub names
    match in any case; an unknown hub is not limited."""
    limits = quotas(hub_connections_per_second=2)
    assert [limits.hub_connect(HUB.upper(), NOW) for _ in range(3)] == [False, False, True]
    assert limits.hub_connect(HUB, NOW + 0.5) is False
    assert limits.hub_connect("other.azure-devices.net", NOW) is False
    assert limits.refused[Kind.HUB_CONNECTIONS] == 1


def test_twin_reads_and_updates_have_their_own_buckets() -> None:
    """Reads exhausted, updates still pass; then updates exhausted."""
    limits = quotas(hub_twin_reads_per_second=1, hub_twin_updates_per_second=1)
    assert (limits.twin_read(HUB, NOW), limits.twin_read(HUB, NOW)) == (False, True)
    assert (limits.twin_update(HUB, NOW), limits.twin_update(HUB, NOW)) == (False, True)


def test_a_late_event_loop_refuses_new_work_for_a_while() -> None:
    """A lag above overload_lag_seconds: registrations 429 and hub CONNACK 3 for 2 s; a lag
    below it changes nothing; polls are still answered (they let devices finish)."""
    limits = quotas(overload_lag_seconds=0.5)
    limits.note_lag(0.4, NOW)
    assert not limits.overloaded(NOW)
    limits.note_lag(0.6, NOW)
    assert limits.register(NOW + 1, assigning=0) == 3
    assert limits.hub_connect(HUB, NOW + 1) is True
    assert limits.poll("d", NOW + 1) is None
    assert limits.register(NOW + 2.5, assigning=0) is None
    assert limits.refused[Kind.OVERLOAD] == 2


def test_zero_turns_one_quota_off_and_enabled_false_all() -> None:
    """0 registrations a minute: never refused; enabled = false: nothing is ever refused."""
    off = quotas(dps_registrations_per_minute=0, dps_polls_per_device=0)
    assert all(off.register(NOW, assigning=0) is None for _ in range(2000))
    assert all(off.poll("d", NOW) is None for _ in range(100))
    disabled = quotas(enabled=False, hub_connections_per_second=1, dps_max_assigning=1)
    disabled.note_lag(100.0, NOW)
    assert disabled.register(NOW, assigning=50) is None
    assert not any(disabled.hub_connect(HUB, NOW) for _ in range(10))
    assert not disabled.overloaded(NOW)


def test_defaults_are_azures_documented_limits() -> None:
    """DPS 1,000 registrations a minute and 5 polls per 10 s per device; IoT Hub S1: 100 new
    connections and twin reads a second, 50 twin updates."""
    defaults = parse_quotas({})
    assert defaults == QuotaSettings()
    assert (defaults.dps_registrations_per_minute, defaults.dps_polls_per_device) == (1000, 5)
    assert defaults.hub_connections_per_second == 100
    assert (defaults.hub_twin_reads_per_second, defaults.hub_twin_updates_per_second) == (100, 50)


def test_parse_reads_every_field() -> None:
    """Each field as given; whole numbers stay whole."""
    settings = parse_quotas(
        {"enabled": False, "dps_max_assigning": 7, "hub_connections_per_second": 2.5}
    )
    assert settings.enabled is False
    assert settings.dps_max_assigning == 7
    assert isinstance(settings.dps_max_assigning, int)
    assert settings.hub_connections_per_second == 2.5


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ([], "[quotas]: expected a table"),
        ({"dps_registrations": 1}, "unknown field 'dps_registrations'"),
        ({"enabled": "yes"}, "[quotas] enabled: expected true or false"),
        ({"dps_polls_per_device": 1.5}, "dps_polls_per_device: expected a whole number"),
        ({"hub_connections_per_second": -1}, "expected a number from 0 to 1e9"),
        ({"hub_twin_reads_per_second": True}, "hub_twin_reads_per_second: expected a number"),
        ({"overload_lag_seconds": math.nan}, "overload_lag_seconds: expected a number"),
    ],
)
def test_a_bad_quotas_table_names_the_field(table: object, message: str) -> None:
    """Every problem names the field and what was expected."""
    with pytest.raises(QuotaError, match=None) as raised:
        parse_quotas(table)
    assert message in str(raised.value)


def _parsed_or_none(table: dict[str, object]) -> QuotaSettings | None:
    """The settings, or None after checking the QuotaError names [quotas]."""
    try:
        return parse_quotas(table)
    except QuotaError as error:
        message = str(error)
    assert message.startswith("[quotas]")
    return None


@given(
    st.dictionaries(
        st.sampled_from([*QuotaSettings().to_json(), "other"]),
        st.one_of(
            st.booleans(),
            st.integers(-10, 10**12),
            st.floats(allow_nan=True, allow_infinity=True),
            st.text(max_size=5),
            st.none(),
        ),
        max_size=8,
    )
)
def test_parse_quotas_takes_any_table_to_settings_or_a_quota_error(
    table: dict[str, object],
) -> None:
    """Whatever a config file holds: settings whose every limit is finite and >= 0, or a
    QuotaError naming [quotas]; nothing else escapes, and decisions on them never fail."""
    settings = _parsed_or_none(table)
    if settings is None:
        return
    for name, value in settings.to_json().items():
        if name != "enabled":
            assert 0 <= value <= 1e9
    limits = Quotas(settings, (HUB,), now=NOW)
    for step in range(3):
        retry = limits.register(NOW + step, assigning=step)
        assert retry is None or 1 <= retry <= 60
        poll = limits.poll("d", NOW + step)
        assert poll is None or 1 <= poll <= 60
        limits.hub_connect(HUB, NOW + step)
