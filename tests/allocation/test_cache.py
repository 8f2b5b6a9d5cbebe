"""ByteBoundedCache: least recently used entries go first, and the total never exceeds the budget."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from allocation.cache import ByteBoundedCache


def sized(max_bytes: int) -> ByteBoundedCache[str, bytes]:
    return ByteBoundedCache(max_bytes=max_bytes, size=lambda key, value: len(value))


def test_least_recently_used_goes_first() -> None:
    """Reading an entry protects it; the oldest unread one is evicted."""
    cache = sized(30)
    cache.put("a", b"x" * 10)
    cache.put("b", b"x" * 10)
    cache.put("c", b"x" * 10)
    assert cache.get("a") == b"x" * 10
    cache.put("d", b"x" * 10)
    assert cache.get("b") is None
    assert {k for k in "acd" if cache.get(k) is not None} == {"a", "c", "d"}
    assert cache.bytes == 30


def test_an_entry_bigger_than_the_budget_is_returned_not_kept() -> None:
    """A value over the whole budget is handed back and evicts nothing."""
    cache = sized(10)
    cache.put("small", b"x")
    assert cache.put("big", b"x" * 11) == b"x" * 11
    assert cache.get("big") is None
    assert cache.get("small") == b"x"


@given(st.lists(st.tuples(st.text(max_size=3), st.binary(max_size=40)), max_size=60))
def test_total_never_exceeds_the_budget(puts: list[tuple[str, bytes]]) -> None:
    """Whatever is put, the cached bytes add up to at most the budget and match the entries."""
    cache = sized(100)
    for key, value in puts:
        cache.put(key, value)
        assert cache.bytes <= 100
    kept = {key: cache.get(key) for key, _ in puts}
    assert cache.bytes == sum(len(value) for value in kept.values() if value is not None)
