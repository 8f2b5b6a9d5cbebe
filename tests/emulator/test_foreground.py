"""Tests for emulator.foreground: what `run` and `up` do to the process before serving."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest

from emulator.foreground import raise_open_file_limit


@pytest.fixture
def lowered_limit() -> Iterator[tuple[int, int]]:
    """The soft limit of open files set below the hard one for the test, restored after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lower = min(soft, 256) if hard == resource.RLIM_INFINITY or hard > 256 else hard
    if lower >= hard and hard != resource.RLIM_INFINITY:
        pytest.skip("the hard limit of open files is too low to lower the soft one")
    resource.setrlimit(resource.RLIMIT_NOFILE, (lower, hard))
    yield lower, hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_soft_open_file_limit_is_raised_to_the_hard_one(
    lowered_limit: tuple[int, int],
) -> None:
    """A soft limit below the hard one (1,024 is common) is raised to it: one file per device."""
    lower, hard = lowered_limit
    limit = raise_open_file_limit()
    assert limit > lower
    if hard != resource.RLIM_INFINITY:
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
