"""Azure's documented quotas, and the emulator's own admission control, as pure decisions.

Every decision takes `now` (seconds); nothing here reads a clock, sleeps or does I/O. The rules
(values and sources: docs/protocol/limits.md §1, §2, §9):

    quota (`[quotas]` field)         default  answer when exceeded             source
    dps_registrations_per_minute     1000     DPS 429 429001 + retry-after     DPS limits, per service
    dps_polls_per_device             5        DPS 429 on that device's poll    DPS limits, per 10 s
    dps_max_assigning                100      DPS 429 on register              the emulator's capacity
    hub_connections_per_second       100      CONNACK 3 (server unavailable)   IoT Hub S1, 1 unit
    hub_twin_reads_per_second        100      twin response 429                IoT Hub S1
    hub_twin_updates_per_second      50       twin response 429                IoT Hub S1
    overload_lag_seconds             5.0      DPS 429 on register; CONNACK 3   the emulator's capacity

- A rate is a token bucket holding one period's worth (a minute for per-minute quotas, a second
  for per-second ones), full at start and refilled continuously: "rate limitations applied in
  minute ranges", with bursts up to the period's quota. Refused requests take no token.
- A device's polls are counted in a sliding window of 10 s (`time_scale` times that, as DPS's
  other timings are scaled for tests).
- `dps_max_assigning` bounds the registrations DPS is assigning at once (allocations running,
  webhook retries included); `overload_lag_seconds` refuses new work while the event loop runs
  late by more than that (a lag sample in the last `OVERLOAD_MEMORY` seconds): both keep every
  answer well inside the SDKs' timeouts (30 s per DPS request, 60 s per CONNECT).
- `0` turns one quota off; `enabled = false` turns them all off (admission control included).
- `retry-after` is whole seconds, at least 1 (the Python SDK `int()`s it): when a token or a
  window slot comes free, else DPS's polling interval (3 s, `time_scale` times it).

Errors:

    QuotaError     a `[quotas]` table that breaks the rules above; names the field and what was
                   expected
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

__all__ = [
    "OVERLOAD_MEMORY",
    "Kind",
    "QuotaError",
    "QuotaSettings",
    "Quotas",
    "TokenBucket",
    "parse_quotas",
]

POLL_WINDOW = 10.0  # seconds: DPS's "5/10 sec/device"
OVERLOAD_MEMORY = 2.0  # seconds a late event loop keeps counting as overloaded
DPS_RETRY_AFTER = 3  # what DPS says on its 202s; used when no better wait is known
MAX_RETRY_AFTER = 60
MAX_TRACKED_DEVICES = 100_000  # poll windows kept, least recently polled forgotten first


class QuotaError(ValueError):
    """A `[quotas]` table is invalid; the message names the field and what was expected."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


class Kind(StrEnum):
    """What a refusal was for (counted in `Quotas.refused`)."""

    DPS_REGISTRATIONS = "dps_registrations_per_minute"
    DPS_POLLS = "dps_polls_per_device"
    DPS_ASSIGNING = "dps_max_assigning"
    HUB_CONNECTIONS = "hub_connections_per_second"
    HUB_TWIN_READS = "hub_twin_reads_per_second"
    HUB_TWIN_UPDATES = "hub_twin_updates_per_second"
    OVERLOAD = "overload_lag_seconds"


@dataclass(frozen=True, kw_only=True)
class QuotaSettings:
    """The `[quotas]` table; each quota 0 = off, `enabled = false` = all off."""

    enabled: bool = True
    dps_registrations_per_minute: float = 1000.0
    dps_polls_per_device: int = 5
    dps_max_assigning: int = 100
    hub_connections_per_second: float = 100.0
    hub_twin_reads_per_second: float = 100.0
    hub_twin_updates_per_second: float = 50.0
    overload_lag_seconds: float = 5.0

    def to_json(self) -> dict[str, Any]:
        """Every field, as the config file spells it."""
        return {item.name: getattr(self, item.name) for item in fields(self)}


_WHOLE = ("dps_polls_per_device", "dps_max_assigning")


def parse_quotas(value: object, *, where: str = "[quotas]") -> QuotaSettings:
    """Validate a `[quotas]` table (TOML or JSON object), or raise QuotaError."""
    if not isinstance(value, Mapping):
        raise QuotaError(where, "expected a table of quota settings")
    names = [item.name for item in fields(QuotaSettings)]
    values: dict[str, Any] = {}
    for name, raw in value.items():
        if name not in names:
            raise QuotaError(where, f"unknown field {name!r}; expected one of {', '.join(names)}")
        if name == "enabled":
            if not isinstance(raw, bool):
                raise QuotaError(f"{where} enabled", "expected true or false")
            values[name] = raw
            continue
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise QuotaError(f"{where} {name}", "expected a number")
        if raw < 0 or raw > 1e9:
            raise QuotaError(f"{where} {name}", "expected a number from 0 to 1e9 (0: off)")
        if name in _WHOLE and raw != int(raw):
            raise QuotaError(f"{where} {name}", "expected a whole number")
        values[name] = int(raw) if name in _WHOLE else float(raw)
    return QuotaSettings(**values)


class TokenBucket:
    """`capacity` tokens, refilled at `rate` per second; a request takes one when there is one."""

    def __init__(self, rate: float, capacity: float, *, now: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, capacity)
        self._tokens = self.capacity
        self._updated = now

    def take(self, now: float) -> float:
        """0.0 if a token was taken, else the seconds until one will be there."""
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._updated = max(self._updated, now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


class _Windows:
    """Per-key sliding windows: at most `limit` events in any `window` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """0.0 if the event is admitted (and counted), else the seconds until a slot frees."""
        events = self._events.pop(key, None) or deque()
        while events and events[0] <= now - self.window:
            events.popleft()
        self._events[key] = events  # most recently used last
        while len(self._events) > MAX_TRACKED_DEVICES:
            self._events.popitem(last=False)
        if len(events) < self.limit:
            events.append(now)
            return 0.0
        return events[0] + self.window - now


class Quotas:
    """The quotas of DPS and every hub, and the overload rule; decides with `now`."""

    def __init__(
        self,
        settings: QuotaSettings,
        hubs: tuple[str, ...],
        *,
        now: float,
        time_scale: float = 1.0,
    ) -> None:
        self.settings = settings
        self._scale = time_scale
        self._retry_after = max(1, round(DPS_RETRY_AFTER * time_scale))
        self._late_until = -math.inf
        self.refused: dict[Kind, int] = dict.fromkeys(Kind, 0)
        self._registrations = _bucket(settings.dps_registrations_per_minute / 60, 60, now)
        self._polls = (
            _Windows(settings.dps_polls_per_device, POLL_WINDOW * time_scale)
            if settings.dps_polls_per_device
            else None
        )
        per_hub = (
            (Kind.HUB_CONNECTIONS, settings.hub_connections_per_second),
            (Kind.HUB_TWIN_READS, settings.hub_twin_reads_per_second),
            (Kind.HUB_TWIN_UPDATES, settings.hub_twin_updates_per_second),
        )
        self._hubs: dict[tuple[str, Kind], TokenBucket | None] = {
            (hub.lower(), kind): _bucket(rate, 1, now) for hub in hubs for kind, rate in per_hub
        }

    # -- overload (the event loop's lag, measured by the shell) -------------------------------

    def note_lag(self, lag: float, now: float) -> None:
        """The event loop ran `lag` seconds late at `now`."""
        if self.settings.overload_lag_seconds and lag > self.settings.overload_lag_seconds:
            self._late_until = now + OVERLOAD_MEMORY

    def overloaded(self, now: float) -> bool:
        """Whether new work is refused now because the event loop runs late."""
        return self.settings.enabled and now < self._late_until

    # -- DPS (`dps.service.Admission`) --------------------------------------------------------

    def register(self, now: float, *, assigning: int) -> int | None:
        """The `retry-after` to refuse a DPS registration with, or None to admit it."""
        if not self.settings.enabled:
            return None
        limit = self.settings.dps_max_assigning
        if limit and assigning >= limit:
            return self._refuse(Kind.DPS_ASSIGNING, None)
        if self.overloaded(now):
            return self._refuse(Kind.OVERLOAD, None)
        if self._registrations is not None:
            wait = self._registrations.take(now)
            if wait:
                return self._refuse(Kind.DPS_REGISTRATIONS, wait)
        return None

    def poll(self, registration_id: str, now: float) -> int | None:
        """The `retry-after` to refuse a device's DPS poll with, or None to answer it."""
        if not self.settings.enabled or self._polls is None:
            return None
        wait = self._polls.take(registration_id.lower(), now)
        return self._refuse(Kind.DPS_POLLS, wait) if wait else None

    # -- hubs -----------------------------------------------------------------------------------

    def hub_connect(self, hub: str, now: float) -> bool:
        """Whether a device CONNECT to `hub` is refused now (CONNACK 3)."""
        if not self.settings.enabled:
            return False
        if self.overloaded(now):
            self._refuse(Kind.OVERLOAD, None)
            return True
        return self._hub_refuses(hub, Kind.HUB_CONNECTIONS, now)

    def twin_read(self, hub: str, now: float) -> bool:
        """Whether a device's twin GET is refused now (429)."""
        return self.settings.enabled and self._hub_refuses(hub, Kind.HUB_TWIN_READS, now)

    def twin_update(self, hub: str, now: float) -> bool:
        """Whether a device's reported-properties PATCH is refused now (429)."""
        return self.settings.enabled and self._hub_refuses(hub, Kind.HUB_TWIN_UPDATES, now)

    def describe(self) -> dict[str, Any]:
        """The settings and how many requests each rule refused since start."""
        return {
            "settings": self.settings.to_json(),
            "refused": {kind.value: count for kind, count in self.refused.items()},
        }

    def _hub_refuses(self, hub: str, kind: Kind, now: float) -> bool:
        bucket = self._hubs.get((hub.lower(), kind))
        if bucket is None or not bucket.take(now):
            return False
        self.refused[kind] += 1
        return True

    def _refuse(self, kind: Kind, wait: float | None) -> int:
        self.refused[kind] += 1
        if wait is None:
            return self._retry_after
        return min(MAX_RETRY_AFTER, max(1, math.ceil(wait)))


def _bucket(rate: float, period: float, now: float) -> TokenBucket | None:
    """A bucket of one `period`'s worth at `rate` per second; None for a rate of 0 (off)."""
    return TokenBucket(rate, rate * period, now=now) if rate > 0 else None
