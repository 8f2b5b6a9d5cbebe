"""Weighted consistent hashing of registration ids over hubs.

DPS's own ``hashed`` policy promises an even spread but nothing about what happens when a hub is
added: devices may all move. Here each hub owns ``weight * POINTS_PER_WEIGHT`` points on a 64-bit
ring, placed by hashing the hub's case-folded host name; a registration id goes to the owner of the
first point at or after its own hash. Adding a hub of weight w to hubs of total weight W moves only
the ids that land on the new hub's points: about w / (W + w) of them, and nothing else moves.
Removing a hub moves only its own ids.

Hashes are BLAKE2b (stable across processes and platforms, unlike ``hash()``). A ring is built once
per distinct candidate set and kept in a small LRU cache: candidate sets come from ``linkedHubs``
and the policy, so a deployment sees only a handful of them.

A hub of weight 0 gets no points: it keeps the devices that ``sticky`` keeps there, and receives
no new ones (draining a hub).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

POINTS_PER_WEIGHT = 160


def key_hash(text: str) -> int:
    """A stable 64-bit hash of a string."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class Ring:
    """Sorted points and, for each, the index of the hub that owns it."""

    points: tuple[int, ...]
    owners: tuple[int, ...]

    def owner(self, key: str) -> int | None:
        """Index of the hub that owns ``key``, or None when no hub has a point."""
        if not self.points:
            return None
        position = bisect.bisect_left(self.points, key_hash(key))
        return self.owners[position % len(self.points)]


@functools.lru_cache(maxsize=256)
def build_ring(hubs: tuple[tuple[str, float], ...]) -> Ring:
    """The ring for hubs given as (host name, weight); host names are compared case-insensitively."""
    placed: list[tuple[int, int]] = []
    for index, (name, weight) in enumerate(hubs):
        folded = name.casefold()
        for replica in range(round(weight * POINTS_PER_WEIGHT)):
            placed.append((key_hash(f"{folded}#{replica}"), index))
    # Ties between hubs (a 64-bit collision) are broken by host name so the ring never depends
    # on the order in which hubs were listed.
    placed.sort(key=lambda point: (point[0], hubs[point[1]][0].casefold()))
    return Ring(points=tuple(p for p, _ in placed), owners=tuple(o for _, o in placed))


def choose(key: str, hubs: Sequence[tuple[str, float]]) -> str | None:
    """The hub (as given) that owns ``key``; None when every weight is 0."""
    candidates = tuple(hubs)
    owner = build_ring(candidates).owner(key)
    return None if owner is None else candidates[owner][0]
