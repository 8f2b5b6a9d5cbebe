"""Tests for emulator.events.policy: Event Grid's verdicts, retry schedule, limits and handshake."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.events.policy import (
    GiveUp,
    Retry,
    Verdict,
    judge,
    next_step,
    retry_delay,
    validation_problem,
)

MINUTE, HOUR = 60.0, 3600.0


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        *[(status, Verdict.DELIVERED) for status in (200, 201, 202, 203, 204)],
        *[(status, Verdict.DROP) for status in (400, 401, 403, 413)],
        *[(status, Verdict.RETRY) for status in (None, 205, 302, 404, 408, 429, 500, 503)],
    ],
)
def test_only_200_to_204_deliver_and_four_statuses_are_never_retried(
    status: int | None, verdict: Verdict
) -> None:
    """Success is 200-204; 400/401/403/413 drop; everything else, no answer too, retries."""
    assert judge(status) is verdict


def test_the_schedule_is_event_grids_then_every_twelve_hours() -> None:
    """10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h, 6 h, then 12 h for ever after."""
    delays = [retry_delay(attempt, random=0.0) for attempt in range(1, 13)]
    assert delays == [
        10,
        30,
        MINUTE,
        5 * MINUTE,
        10 * MINUTE,
        30 * MINUTE,
        HOUR,
        3 * HOUR,
        6 * HOUR,
        12 * HOUR,
        12 * HOUR,
        12 * HOUR,
    ]


@given(st.integers(min_value=1, max_value=40), st.floats(min_value=0, max_value=0.999999))
def test_randomization_only_stretches_a_step_by_under_ten_percent(attempts: int, r: float) -> None:
    """A step is a lower bound: the jittered wait is in [step, 1.1 x step)."""
    step = retry_delay(attempts, random=0.0)
    assert step <= retry_delay(attempts, random=r) < step * 1.1


def test_scale_shrinks_every_step() -> None:
    """--time-scale multiplies the schedule."""
    assert retry_delay(1, random=0.0, scale=0.001) == pytest.approx(0.01)


def test_thirty_attempts_is_the_limit() -> None:
    """After the 30th failed attempt the event is given up."""
    assert isinstance(next_step(29, age=0, random=0, ttl=10**9), Retry)
    assert isinstance(next_step(30, age=0, random=0, ttl=10**9), GiveUp)


def test_the_time_to_live_ends_retries_within_a_day() -> None:
    """With the real schedule an event gets 11 attempts in its 24 h, the last at 22.8 h."""
    age, attempts = 0.0, 0
    while True:
        attempts += 1
        step = next_step(attempts, age=age, random=0)
        if isinstance(step, GiveUp):
            break
        age += step.delay
    assert attempts == 11
    assert age == 82_000  # 22.8 h: the next 12 h step would end after the 24 h
    assert "time to live" in step.reason


def test_a_handshake_answer_validates_only_when_it_echoes_the_code() -> None:
    """200 with {"validationResponse": code} validates; other answers say what is wrong."""
    good = json.dumps({"validationResponse": "c0de"}).encode()
    assert validation_problem(200, good, "c0de") is None
    assert validation_problem(202, good, "c0de") == "HTTP 202 (202 does not validate)"
    assert "not the validationCode" in (validation_problem(200, good, "other") or "")


@given(st.integers(min_value=100, max_value=599), st.binary(max_size=200), st.text(max_size=20))
def test_any_handshake_answer_is_judged_without_error(status: int, body: bytes, code: str) -> None:
    """Whatever an endpoint answers, the handshake check returns a reason or None, never raises."""
    problem = validation_problem(status, body, code)
    if problem is None:
        assert status == 200
        assert json.loads(body)["validationResponse"] == code
