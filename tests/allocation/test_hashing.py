"""The hash ring: the same placements as ever, in bounded memory and time (issue #14.2)."""

from __future__ import annotations

import bisect
import random
import time
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allocation import decide, default_policy, engine, hashing, parse_request
from allocation.budget import DecisionBudget
from allocation.cache import ByteBoundedCache
from allocation.errors import DecisionBudgetExceeded
from tests.strategies import linked_hubs, registration_ids


def reference_owner(hubs: list[tuple[str, float]], key: str) -> int | None:
    """The ring as first written (tuples, one sort over (point, folded name)): the placements
    every deployed device already has, which the compact ring must keep."""
    placed = []
    for index, (name, weight) in enumerate(hubs):
        for replica in range(round(weight * hashing.POINTS_PER_WEIGHT)):
            placed.append((hashing.key_hash(f"{name.casefold()}#{replica}"), index))
    placed.sort(key=lambda point: (point[0], hubs[point[1]][0].casefold()))
    if not placed:
        return None
    position = bisect.bisect_left([p for p, _ in placed], hashing.key_hash(key))
    return placed[position % len(placed)][1]


@settings(max_examples=60, deadline=None)
@given(
    linked_hubs(min_size=1, max_size=6),
    st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0]), min_size=6, max_size=6),
    st.lists(registration_ids(), min_size=1, max_size=20),
)
def test_no_device_moves(hubs: list[str], weights: list[float], ids: list[str]) -> None:
    """For any hubs, weights and ids, the owner is the one the original ring gave."""
    weighted = list(zip(hubs, weights, strict=False))
    ring = hashing.build_ring(tuple(weighted))
    for registration_id in ids:
        key = registration_id.lower()
        assert ring.owner(key) == reference_owner(weighted, key)


def test_same_host_name_twice_keeps_the_first() -> None:
    """Two spellings of one host share every point; the one listed first owns them, as before."""
    weighted = [("HUB.net", 1.0), ("hub.net", 1.0), ("other.net", 1.0)]
    ring = hashing.build_ring(tuple(weighted))
    for n in range(200):
        assert ring.owner(f"d{n}") == reference_owner(weighted, f"d{n}")


SMALL = 512 * 1024


@pytest.fixture
def small_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's three caches, empty, with budgets of 512 KiB each."""
    monkeypatch.setattr(
        hashing, "_hub_points", ByteBoundedCache(max_bytes=SMALL, size=hashing._hub_points_size)
    )
    monkeypatch.setattr(
        hashing, "_rings", ByteBoundedCache(max_bytes=SMALL, size=hashing._ring_size)
    )
    monkeypatch.setattr(
        engine, "_candidate_cache", ByteBoundedCache(max_bytes=SMALL, size=engine._candidates_size)
    )


def fifty_hubs(seed: int) -> list[str]:
    """50 host names no earlier request used."""
    generator = random.Random(seed)
    return [f"h{generator.getrandbits(48):012x}.azure-devices.net" for _ in range(50)]


def test_distinct_hub_sets_stay_within_the_byte_budgets(small_caches: None) -> None:
    """40 requests with 50 never-seen hubs each keep at most the caches' budgets (1.5 MiB here;
    with caches bounded by entries only they held 7.3 MiB, and 17 MiB per 2,000-hub request)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for seed in range(40):
            parsed = parse_request(
                {"deviceRuntimeContext": {"registrationId": "d"}, "linkedHubs": fifty_hubs(seed)}
            )
            decide(default_policy(), parsed)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert hashing.cached_bytes() <= 2 * SMALL
    assert grown < 5 * SMALL


def test_a_fifty_hub_ring_is_cheap_and_the_next_one_reuses_its_hubs(small_caches: None) -> None:
    """A cold 50-hub ring costs milliseconds; a new set of the same hubs is a merge."""
    hubs = fifty_hubs(1)
    parsed = parse_request({"deviceRuntimeContext": {"registrationId": "d"}, "linkedHubs": hubs})
    budget = DecisionBudget(0.2, clock=_perf_counter)
    decide(default_policy(), parsed, budget=budget)
    reordered = parse_request(
        {"deviceRuntimeContext": {"registrationId": "d"}, "linkedHubs": hubs[::-1]}
    )
    decide(default_policy(), reordered, budget=DecisionBudget(0.05, clock=_perf_counter))


def test_a_spent_budget_stops_the_decision_and_keeps_the_work_done(small_caches: None) -> None:
    """Out of time after a few hubs: DecisionBudgetExceeded; those hubs' points stay cached, so a
    retry with a fresh budget finishes."""
    hubs = fifty_hubs(2)
    parsed = parse_request({"deviceRuntimeContext": {"registrationId": "d"}, "linkedHubs": hubs})
    ticks = iter(range(1000))
    budget = DecisionBudget(10, clock=lambda: float(next(ticks)))  # 10 checks, then spent
    with pytest.raises(DecisionBudgetExceeded):
        decide(default_policy(), parsed, budget=budget)
    assert len(hashing._hub_points) >= 5
    assert decide(default_policy(), parsed).hub in hubs  # type: ignore[union-attr]


def _perf_counter() -> float:
    return time.perf_counter()
