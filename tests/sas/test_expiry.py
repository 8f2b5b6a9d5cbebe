"""SAS expiry is capped at the end of year 9999, the last instant a .NET DateTime can hold."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sas import (
    MalformedToken,
    TokenExpired,
    generate_sas_token,
    parse_sas_token,
    verify_sas_token,
)
from sas.token import MAX_EXPIRY

KEY = "OSANXEslinwdWI7CugTZIIMS97VdG65m3pD753neq7E="
RESOURCE = "hub.azure-devices.net/devices/dev-001"


def test_max_expiry_is_the_last_second_of_year_9999() -> None:
    """MAX_EXPIRY is 9999-12-31T23:59:59Z in seconds since the epoch."""
    assert datetime.fromtimestamp(MAX_EXPIRY, tz=UTC) == datetime(
        9999, 12, 31, 23, 59, 59, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "expiry", [MAX_EXPIRY + 1, 10**11 * 1000, 10**19, 99_999_999_999_999_999_999]
)
def test_an_expiry_past_year_9999_is_malformed(expiry: int) -> None:
    """A token whose `se` lies past year 9999 is refused as malformed, saying why."""
    token = generate_sas_token(RESOURCE, KEY, expiry)
    with pytest.raises(MalformedToken, match="no later than the end of year 9999") as refused:
        parse_sas_token(token)
    assert refused.value.reason == "bad_expiry"
    assert str(expiry) not in str(refused.value)


@given(st.integers(min_value=MAX_EXPIRY + 1, max_value=10**20 - 1))
def test_every_expiry_past_the_cap_is_malformed(expiry: int) -> None:
    """Any `se` of up to 20 digits past MAX_EXPIRY is refused."""
    with pytest.raises(MalformedToken):
        parse_sas_token(generate_sas_token(RESOURCE, KEY, expiry))


def test_an_expiry_at_the_cap_is_accepted_while_the_clock_allows() -> None:
    """`se` = MAX_EXPIRY parses and verifies before that instant, and is expired at it."""
    token = parse_sas_token(generate_sas_token(RESOURCE, KEY, MAX_EXPIRY))
    assert token.expiry == MAX_EXPIRY
    assert verify_sas_token(token, [KEY], expected_resource=RESOURCE, now=1_700_000_000) == 0
    assert verify_sas_token(token, [KEY], expected_resource=RESOURCE, now=MAX_EXPIRY - 1) == 0
    with pytest.raises(TokenExpired):
        verify_sas_token(token, [KEY], expected_resource=RESOURCE, now=MAX_EXPIRY)
