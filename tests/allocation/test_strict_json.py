"""Strict JSON at the edge: standard JSON in valid UTF-8, bounded in size and depth, with the field
named on every refusal (issue #14.4 and #14.10)."""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from allocation.errors import RequestError
from allocation.strict_json import MAX_BODY_BYTES, decode
from tests.strategies import json_values


@pytest.mark.parametrize(
    ("body", "field", "expected"),
    [
        (b'{"a": "\\ud800"}', "a", "lone surrogate"),
        (b'{"a": "\xed\xa0\x80"}', "body", "invalid byte at offset 7"),
        (b'{"a": {"b": ["x", "\\udfff"]}}', "a.b[1]", "lone surrogate"),
        (b'{"a": {"\\ud800": 1}}', "a", "in every key"),
        (b'"\\ud800"', "body", "lone surrogate"),
        (b'{"a": NaN}', "a", "got NaN"),
        (b'{"a": [Infinity]}', "a[0]", "got Infinity"),
        (b'{"a": {"b c": -Infinity}}', 'a["b c"]', "got -Infinity"),
        (b'{"a": 1e400}', "a", "got 1e400"),
        (b"-1e999", "body", "got -1e999"),
        (b"[" * 33 + b"]" * 33, "body" + "[0]" * 32, "at most 32 levels"),
        (b"[" * 100_000, "body", "at most 32 levels"),
        (b"{" + b'"k": 1, ' * 40_000 + b'"k": 1}', "body", "at most 262144 bytes"),
        (b"", "body", "empty body"),
        (b"\xff\xfe{}", "body", "invalid byte at offset 0"),
        (b"{'a': 1}", "body", "not JSON"),
    ],
)
def test_what_is_not_standard_json_is_refused_naming_the_field(
    body: bytes, field: str, expected: str
) -> None:
    """Lone surrogates (escaped or raw), NaN, Infinity, overflowing numbers, deep nesting, big or
    empty bodies and invalid UTF-8 are RequestErrors naming the field, never another exception."""
    with pytest.raises(RequestError) as raised:
        decode(body)
    assert raised.value.field == field
    assert expected in raised.value.expected


def test_32_levels_and_a_body_at_the_limit_are_accepted() -> None:
    """The limits are inclusive."""
    assert decode(b"[" * 32 + b"]" * 32) == decode(b"[" * 32 + b"]" * 32)
    padded = b'{"a": "' + b"x" * (MAX_BODY_BYTES - 9) + b'"}'
    assert len(padded) == MAX_BODY_BYTES
    assert decode(padded)["a"].startswith("x")


def test_valid_surrogate_pairs_and_big_integers_are_standard() -> None:
    """An escaped pair is one astral character; integers beyond a double stay exact."""
    assert decode(b'{"e": "\\ud83d\\ude00", "n": 123456789012345678901234567890}') == {
        "e": "\U0001f600",
        "n": 123456789012345678901234567890,
    }


def test_a_full_size_body_is_checked_quickly() -> None:
    """The walk is linear: a body of 256 KiB of small containers takes milliseconds."""
    body = ("[" + ",".join(['{"a":"\\ud83d\\ude00"}'] * 10_000) + "]").encode()
    assert len(body) <= MAX_BODY_BYTES
    started = time.perf_counter()
    decode(body)
    assert time.perf_counter() - started < 0.5


@given(json_values)
def test_standard_json_round_trips(value: object) -> None:
    """Anything json.dumps writes as standard JSON comes back equal."""
    try:
        text = json.dumps(value, allow_nan=False)
    except ValueError:
        assume(False)  # infinity: not standard JSON, refused above
    assert decode(text.encode()) == value


@given(st.binary(max_size=200))
def test_any_bytes_are_a_value_or_a_request_error(body: bytes) -> None:
    """No input escapes as another exception."""
    with contextlib.suppress(RequestError):
        decode(body)
