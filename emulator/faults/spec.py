"""Fault injection for drills and tests: throttled DPS, slow webhooks, dropped and refused connections.

A fault applies to one target: `dps` or a hub host name (case-insensitive). It comes from the
config (`[faults.dps]`, `[faults."<hub>"]`) or from the admin API, as a `FaultSpec`:

    field              targets   effect
    throttle_seconds   dps       answer register and poll with 429 + `retry-after` for this long
    throttle_requests  dps       answer the next N register / poll requests with 429
    retry_after        dps       the `retry-after` of those answers (whole seconds, default 1)
    webhook_latency    dps       wait this many seconds before each custom-allocation webhook call
    refuse_seconds     any       refuse new CONNECTs with CONNACK 3 (server unavailable) this long
    refuse_connects    any       refuse the next N CONNECTs with CONNACK 3
    drop_every         any       close every connection of the target every N seconds

Plus a one-shot action: drop the target's connections now (`Faults.take_connections`). A dropped
connection is closed without a DISCONNECT, as a network failure would; hub sessions (and so the
device's subscriptions) survive it, and the device SDK reconnects (hub-mqtt.md §7). The SDK
retries a 429 after `retry-after` (dps-mqtt.md §4, wire-traces D7) and gives up on CONNACK 3.

This module is the pure part: `parse_fault_spec` and `Faults`, which decides with `now` passed in
(no clock, no I/O, no socket). `fault_gate` applies the decisions to connections and webhooks.

Errors:

    FaultError     a fault spec that breaks the table above; names the field and what was expected
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulator.endpoints import Close, MqttEndpoint

__all__ = [
    "DPS_TARGET",
    "THROTTLED_ERROR_CODE",
    "THROTTLED_MESSAGE",
    "FaultError",
    "FaultSpec",
    "Faults",
    "parse_fault_spec",
    "parse_fault_table",
]

# What a throttled DPS answers, over MQTT and HTTPS alike (wire-traces D7).
THROTTLED_ERROR_CODE = 429001
THROTTLED_MESSAGE = "Operations are being throttled for this tenant."

DPS_TARGET = "dps"
_DPS_ONLY = ("throttle_seconds", "throttle_requests", "retry_after", "webhook_latency")
_COUNTS = ("throttle_requests", "refuse_connects", "retry_after")


class FaultError(ValueError):
    """A fault spec is invalid; the message names the field and what was expected."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


@dataclass(frozen=True, kw_only=True)
class FaultSpec:
    """What to inject into one target; zero means off. Durations are seconds from activation."""

    throttle_seconds: float = 0.0
    throttle_requests: int = 0
    retry_after: int = 1
    webhook_latency: float = 0.0
    refuse_seconds: float = 0.0
    refuse_connects: int = 0
    drop_every: float = 0.0

    def to_json(self) -> dict[str, float | int]:
        """The spec as a JSON object (every field)."""
        return {item.name: getattr(self, item.name) for item in fields(self)}


def parse_fault_spec(value: object, *, target: str, where: str) -> FaultSpec:
    """Validate one fault table (TOML or JSON object) for `target`, or raise FaultError."""
    if not isinstance(value, Mapping):
        raise FaultError(where, "expected a table of fault settings")
    names = [item.name for item in fields(FaultSpec)]
    values: dict[str, Any] = {}
    for name, raw in value.items():
        if name not in names:
            raise FaultError(where, f"unknown field {name!r}; expected one of {', '.join(names)}")
        if name in _DPS_ONLY and target != DPS_TARGET:
            raise FaultError(f"{where}: {name}", "applies to dps only")
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise FaultError(f"{where}: {name}", "expected a number")
        if name in _COUNTS and raw != int(raw):
            raise FaultError(f"{where}: {name}", "expected a whole number")
        if raw < 0 or (name == "retry_after" and not 1 <= raw <= 3600):
            expected = "1 to 3600" if name == "retry_after" else "a number >= 0"
            raise FaultError(f"{where}: {name}", f"expected {expected}")
        values[name] = int(raw) if name in _COUNTS else float(raw)
    return FaultSpec(**values)


def parse_fault_table(value: object, *, hubs: tuple[str, ...], source: str) -> dict[str, FaultSpec]:
    """The config's `[faults]` table: `dps` and hub names -> FaultSpec (keys as configured)."""
    if not isinstance(value, Mapping):
        raise FaultError(f"{source}: [faults]", "expected a table")
    by_name = {hub.lower(): hub for hub in hubs}
    specs: dict[str, FaultSpec] = {}
    for name, table in value.items():
        target = DPS_TARGET if name.lower() == DPS_TARGET else by_name.get(name.lower())
        if target is None:
            raise FaultError(
                f"{source}: [faults.{name}]", "expected dps or one of the [[hubs]] names"
            )
        specs[target] = parse_fault_spec(table, target=target, where=f"{source}: [faults.{name}]")
    return specs


@dataclass(frozen=True, kw_only=True)
class _Active:
    """A spec as activated at a moment: deadlines instead of durations, counters left."""

    spec: FaultSpec
    throttle_until: float
    throttle_left: int
    refuse_until: float
    refuse_left: int
    next_drop: float


@dataclass
class _Target:
    active: _Active | None = None
    connections: dict[str, tuple[MqttEndpoint, Close]] = field(default_factory=dict)


class Faults:
    """The faults of every target and the connections a drop would close. Decides with `now`."""

    def __init__(self, targets: tuple[str, ...]) -> None:
        self._targets = {target.lower(): _Target() for target in (DPS_TARGET, *targets)}
        self._names = {target.lower(): target for target in (DPS_TARGET, *targets)}

    def target(self, name: str) -> str:
        """The canonical target name, or FaultError for one that is not configured."""
        canonical = self._names.get(name.lower())
        if canonical is None:
            raise FaultError("target", f"{name!r}: expected dps or a configured hub name")
        return canonical

    def set(self, name: str, spec: FaultSpec, *, now: float) -> None:
        """Activate `spec` on a target from `now` (replacing what was there)."""
        self._entry(name).active = _Active(
            spec=spec,
            throttle_until=now + spec.throttle_seconds,
            throttle_left=spec.throttle_requests,
            refuse_until=now + spec.refuse_seconds,
            refuse_left=spec.refuse_connects,
            next_drop=now + spec.drop_every,
        )

    def clear(self, name: str) -> None:
        """Remove the target's faults."""
        self._entry(name).active = None

    def describe(self, now: float) -> dict[str, Any]:
        """Every target with an active spec: the spec and what is left of it."""
        described: dict[str, Any] = {}
        for key, entry in self._targets.items():
            active = entry.active
            if active is None:
                continue
            described[self._names[key]] = {
                "spec": active.spec.to_json(),
                "throttle_seconds_left": max(0.0, round(active.throttle_until - now, 3)),
                "throttle_requests_left": active.throttle_left,
                "refuse_seconds_left": max(0.0, round(active.refuse_until - now, 3)),
                "refuse_connects_left": active.refuse_left,
                "connections": len(entry.connections),
            }
        return described

    def refuse_connect(self, name: str, now: float) -> bool:
        """Whether a CONNECT to the target now gets CONNACK 3 (a counted refusal is used up)."""
        entry = self._entry(name)
        active = entry.active
        if active is None:
            return False
        if now < active.refuse_until:
            return True
        if active.refuse_left > 0:
            entry.active = replace(active, refuse_left=active.refuse_left - 1)
            return True
        return False

    def throttle(self, name: str, now: float) -> int | None:
        """The `retry-after` to answer a DPS request with now, or None to serve it."""
        entry = self._entry(name)
        active = entry.active
        if active is None:
            return None
        if now < active.throttle_until:
            return active.spec.retry_after
        if active.throttle_left > 0:
            entry.active = replace(active, throttle_left=active.throttle_left - 1)
            return active.spec.retry_after
        return None

    def webhook_latency(self) -> float:
        """Seconds DPS waits before each webhook call."""
        active = self._entry(DPS_TARGET).active
        return active.spec.webhook_latency if active is not None else 0.0

    def due_drops(self, now: float) -> list[str]:
        """Targets whose `drop_every` has come round (each then waits another period)."""
        due: list[str] = []
        for key, entry in self._targets.items():
            active = entry.active
            if active is not None and active.spec.drop_every > 0 and now >= active.next_drop:
                entry.active = replace(active, next_drop=now + active.spec.drop_every)
                due.append(self._names[key])
        return due

    def track(self, name: str, client_id: str, endpoint: MqttEndpoint, close: Close) -> None:
        """Remember an accepted connection so that a drop can close it."""
        self._entry(name).connections[client_id] = (endpoint, close)

    def forget(self, name: str, client_id: str) -> None:
        """A tracked connection ended."""
        self._entry(name).connections.pop(client_id, None)

    def take_connections(
        self, name: str, client_id: str | None = None
    ) -> list[tuple[str, MqttEndpoint, Close]]:
        """Stop tracking the target's connections (or one client's) and return them to drop."""
        connections = self._entry(name).connections
        chosen = [client_id] if client_id is not None else list(connections)
        taken: list[tuple[str, MqttEndpoint, Close]] = []
        for key in chosen:
            found = connections.pop(key, None)
            if found is not None:
                taken.append((key, *found))
        return taken

    def _entry(self, name: str) -> _Target:
        return self._targets[self.target(name).lower()]
