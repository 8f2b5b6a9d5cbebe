"""Hypothesis strategies shared across the test suite."""

from __future__ import annotations

import base64
import string

from hypothesis import strategies as st

# --- sas: keys and registration ids (../shared/spec/sas-and-keys.md §5) ---


def symmetric_keys() -> st.SearchStrategy[str]:
    """Base64 symmetric keys of 16 to 64 bytes, as DPS and IoT Hub accept them."""
    return st.binary(min_size=16, max_size=64).map(lambda raw: base64.b64encode(raw).decode())


def registration_ids() -> st.SearchStrategy[str]:
    """Registration ids DPS accepts: up to 128 of a-z A-Z 0-9 - . _ :, last alnum or '-'."""
    body = st.text(string.ascii_letters + string.digits + "-._:", max_size=127)
    last = st.sampled_from(string.ascii_letters + string.digits + "-")
    return st.builds(lambda head, tail: head + tail, body, last)


def recommended_registration_ids() -> st.SearchStrategy[str]:
    """Registration ids the group-enrollment documentation recommends: a-z, 0-9 and '-'."""
    return st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=128)


def expiries() -> st.SearchStrategy[int]:
    """SAS expiries in seconds since the epoch, up to the year 2100."""
    return st.integers(min_value=1, max_value=4_102_444_800)
