"""Weighted consistent hashing of registration ids over hubs.

DPS's own ``hashed`` policy promises an even spread but nothing about what happens when a hub is
added: devices may all move. Here each hub owns ``weight * POINTS_PER_WEIGHT`` points on a 64-bit
ring, placed by hashing the hub's case-folded host name; a registration id goes to the owner of the
first point at or after its own hash. Adding a hub of weight w to hubs of total weight W moves only
the ids that land on the new hub's points: about w / (W + w) of them, and nothing else moves.
Removing a hub moves only its own ids.

Hashes are BLAKE2b (stable across processes and platforms, unlike ``hash()``). Hub sets come from
``linkedHubs``, which the caller chooses, so the cost of a ring is bounded three ways:

- memory: a ring is two flat arrays (8 bytes a point, 4 an owner, where tuples of ints took about
  50), and both caches below are bounded in **bytes** (``allocation.cache``), not only in entries;
- work: each hub's points are cached by (host name, point count), so a new set of known hubs is a
  merge, not a rehash; the request limits cap a set at 50 hubs;
- time: ``build_ring`` calls the decision budget's ``check`` between hubs, and the hub points
  computed before it ran out stay cached, so the next attempt continues from there.

A hub of weight 0 gets no points: it keeps the devices that ``sticky`` keeps there, and receives
no new ones (draining a hub).
"""

from __future__ import annotations

import bisect
import hashlib
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from allocation.cache import ByteBoundedCache

POINTS_PER_WEIGHT = 160
RING_CACHE_BYTES = 32 * 2**20
HUB_POINTS_CACHE_BYTES = 32 * 2**20
_ENTRY_OVERHEAD = 256  # dict slot, key tuple, array headers: a generous flat charge per entry
_RANK_BITS = (
    16  # a ring orders points by (point, rank of the hub's folded name): at most 65,536 hubs
)


def key_hash(text: str) -> int:
    """A stable 64-bit hash of a string."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class Ring:
    """Sorted points and, for each, the index of the hub that owns it."""

    points: Sequence[int]
    owners: Sequence[int]

    def owner(self, key: str) -> int | None:
        """Index of the hub that owns ``key``, or None when no hub has a point."""
        if not self.points:
            return None
        position = bisect.bisect_left(self.points, key_hash(key))
        return self.owners[position % len(self.points)]

    @property
    def nbytes(self) -> int:
        """Memory held by the two arrays."""
        return len(self.points) * 8 + len(self.owners) * 4


def _hub_points_size(key: tuple[str, int], points: array[int]) -> int:
    return _ENTRY_OVERHEAD + 2 * len(key[0]) + points.itemsize * len(points)


def _ring_size(key: tuple[tuple[str, float], ...], ring: Ring) -> int:
    return _ENTRY_OVERHEAD * (1 + len(key)) + sum(2 * len(h) for h, _ in key) + ring.nbytes


_hub_points: ByteBoundedCache[tuple[str, int], array[int]] = ByteBoundedCache(
    max_bytes=HUB_POINTS_CACHE_BYTES, size=_hub_points_size
)
_rings: ByteBoundedCache[tuple[tuple[str, float], ...], Ring] = ByteBoundedCache(
    max_bytes=RING_CACHE_BYTES, size=_ring_size
)


def hub_points(folded: str, count: int) -> array[int]:
    """The ring points of one hub (its case-folded host name), cached."""
    key = (folded, count)
    cached = _hub_points.get(key)
    if cached is not None:
        return cached
    points = array("Q", (key_hash(f"{folded}#{replica}") for replica in range(count)))
    return _hub_points.put(key, points)


def build_ring(
    hubs: tuple[tuple[str, float], ...], *, check: Callable[[], None] | None = None
) -> Ring:
    """The ring for hubs given as (host name, weight), cached; host names compare case-insensitively.

    ``check`` (a decision budget's) runs before each hub's points are computed and may raise.
    """
    cached = _rings.get(hubs)
    if cached is not None:
        return cached
    if len(hubs) > 1 << _RANK_BITS:
        raise ValueError(f"hubs: expected at most {1 << _RANK_BITS} hubs on one ring")
    folded = [name.casefold() for name, _ in hubs]
    # Ties between hubs (a 64-bit collision) are broken by host name, then by position, so the
    # ring never depends on the order in which distinct hubs were listed.
    by_name = sorted(range(len(hubs)), key=lambda index: (folded[index], index))
    rank = {index: position for position, index in enumerate(by_name)}
    combined: list[int] = []
    for index, (_, weight) in enumerate(hubs):
        if check is not None:
            check()
        tag = rank[index]
        combined.extend(
            point << _RANK_BITS | tag
            for point in hub_points(folded[index], round(weight * POINTS_PER_WEIGHT))
        )
    combined.sort()
    mask = (1 << _RANK_BITS) - 1
    ring = Ring(
        points=array("Q", [value >> _RANK_BITS for value in combined]),
        owners=array("I", [by_name[value & mask] for value in combined]),
    )
    return _rings.put(hubs, ring)


def choose(key: str, hubs: Sequence[tuple[str, float]]) -> str | None:
    """The hub (as given) that owns ``key``; None when every weight is 0."""
    candidates = tuple(hubs)
    owner = build_ring(candidates).owner(key)
    return None if owner is None else candidates[owner][0]


def cached_bytes() -> int:
    """What the two caches hold now (for tests and the benchmark)."""
    return _hub_points.bytes + _rings.bytes
