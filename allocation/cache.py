"""A least-recently-used cache bounded by the bytes its entries hold, not only by their number.

The engine caches work that depends on request values (the hubs a request links, the hash ring
built over them). A cache bounded by entries alone is bounded in memory only if every entry is
small; one whose entries grow with the request (a ring grows with its hubs and their weights) is
not. ``ByteBoundedCache`` charges each entry the size its ``size`` function reports and evicts the
least recently used entries until the total fits ``max_bytes``; an entry larger than the whole
budget is returned to the caller and not kept.

Thread-safe (a Python Functions worker may run invocations on several threads). Pure: no I/O.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ByteBoundedCache(Generic[K, V]):
    """LRU mapping whose entries' reported sizes add up to at most ``max_bytes``."""

    def __init__(self, *, max_bytes: int, size: Callable[[K, V], int]) -> None:
        self.max_bytes = max_bytes
        self._size = size
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        """The total size of what is cached now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        """The cached value, marked most recently used; None when absent."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: K, value: V) -> V:
        """Keep ``value`` (unless it alone exceeds the budget), evicting the oldest; return it."""
        cost = self._size(key, value)
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._bytes -= previous[1]
            if cost > self.max_bytes:
                return value
            self._entries[key] = (value, cost)
            self._bytes += cost
            while self._bytes > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted
        return value

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0
