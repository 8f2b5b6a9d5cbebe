"""``decide(policy, request)``: the first matching rule denies or allocates.

Allocation, for the matching rule:

1. Candidates are the request's ``linkedHubs`` that match the rule's host-name globs, in the order
   of the rule's globs (then of ``linkedHubs``). Each keeps the exact string DPS sent: the device
   later uses it verbatim as host name, MQTT username prefix and SAS resource.
2. The strategy picks one:
   ``hash``    weighted consistent hash of the canonical registration id (``allocation.hashing``;
               ``sas.registration_id.canonical_registration_id``: lower case for DPS's ids)
   ``sticky``  the device's current hub when it is still a candidate, else ``hash``
   ``static``  the first candidate
3. The initial twin and payload templates are rendered for that hub.

A rule with no candidate hub (its globs match nothing linked), or whose candidates all weigh 0
under ``hash``, denies with a reason that says so: retrying would not help, so DPS should fail the
registration (400207) rather than retry it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from allocation import hashing
from allocation.budget import DecisionBudget
from allocation.cache import ByteBoundedCache
from allocation.policy import Policy
from allocation.request import AllocationRequest
from allocation.rules import Rule, Strategy, host_glob
from allocation.template import MissingValue
from sas.registration_id import canonical_registration_id


@dataclass(frozen=True, kw_only=True)
class Assignment:
    hub: str
    rule: str
    strategy: Strategy
    initial_twin: Any = None  # {"tags": …, "properties": {"desired": …}} or None
    payload: Any = None


@dataclass(frozen=True, kw_only=True)
class Denial:
    rule: str
    reason: str


Decision = Assignment | Denial


def decide(
    policy: Policy, request: AllocationRequest, *, budget: DecisionBudget | None = None
) -> Decision:
    """The decision for one request. Deterministic: the same inputs always give the same answer,
    unless ``budget`` runs out first (``DecisionBudgetExceeded``)."""
    check = budget.check if budget is not None else _no_budget
    folded_group = request.enrollment_group_id.casefold() if request.enrollment_group_id else None
    folded_id = canonical_registration_id(request.registration_id)
    for rule in policy.index.candidates(folded_id, folded_group):
        check()
        captures = _match(rule, request, folded_id, folded_group)
        if captures is None:
            continue
        if rule.deny is not None:
            return Denial(rule=rule.name, reason=rule.deny)
        return _allocate(policy, rule, request, folded_id=folded_id, captures=captures, check=check)
    raise AssertionError("the policy's default rule matches every request")


def _no_budget() -> None:
    return None


def _match(
    rule: Rule, request: AllocationRequest, folded_id: str, folded_group: str | None
) -> dict[str, str] | None:
    captures: dict[str, str] | None = {}
    if rule.registration_id is not None:
        captures = rule.registration_id.match(folded_id, request.registration_id)
        if captures is None:
            return None
    if rule.enrollment_groups is not None and folded_group not in rule.enrollment_groups:
        return None
    if rule.reprovisioning is not None and rule.reprovisioning != request.is_reprovisioning:
        return None
    payload = request.payload
    for condition in rule.payload_conditions:
        if not condition.holds(payload):
            return None
    for placeholder in rule.required_payload:
        if not _has_path(payload, placeholder.path):
            return None
    return captures


def _allocate(
    policy: Policy,
    rule: Rule,
    request: AllocationRequest,
    *,
    folded_id: str,
    captures: dict[str, str],
    check: Callable[[], None],
) -> Decision:
    candidates = _candidates(policy, rule, request.linked_hubs)
    if not candidates:
        patterns = ", ".join(rule.hub_patterns)
        return Denial(rule=rule.name, reason=f"no linked hub matches the rule's hubs ({patterns})")
    hub: str | None = None
    if rule.strategy is Strategy.STATIC:
        hub = candidates[0][0]
    elif rule.strategy is Strategy.STICKY and request.current_hub is not None:
        current = request.current_hub.casefold()
        hub = next((name for name, _ in candidates if name.casefold() == current), None)
    if hub is None:
        owner = hashing.build_ring(candidates, check=check).owner(folded_id)
        hub = None if owner is None else candidates[owner][0]
    if hub is None:
        return Denial(rule=rule.name, reason="every hub this rule may use has weight 0 (draining)")

    values = {
        "registration_id": request.registration_id,
        "enrollment_group": request.enrollment_group_id or "",
        "hub": hub,
        "rule": rule.name,
        "match": captures,
        "payload": request.payload,
    }
    try:
        initial_twin = rule.initial_twin.render(values) if rule.initial_twin else None
        payload = rule.payload.render(values) if rule.payload else None
    except MissingValue as missing:  # guarded by _match; kept so a gap can never become a 500
        return Denial(rule=rule.name, reason=f"the device did not send {missing}")
    return Assignment(
        hub=hub,
        rule=rule.name,
        strategy=rule.strategy,
        initial_twin=initial_twin,
        payload=payload,
    )


Weighted = tuple[tuple[str, float], ...]
CANDIDATES_CACHE_BYTES = 8 * 2**20


def _candidates_size(key: tuple[Policy, Rule, tuple[str, ...]], value: Weighted) -> int:
    return 256 + 120 * (len(key[2]) + len(value)) + 2 * sum(len(hub) for hub in key[2])


_candidate_cache: ByteBoundedCache[tuple[Policy, Rule, tuple[str, ...]], Weighted] = (
    ByteBoundedCache(max_bytes=CANDIDATES_CACHE_BYTES, size=_candidates_size)
)


def _candidates(policy: Policy, rule: Rule, linked_hubs: tuple[str, ...]) -> Weighted:
    """Linked hubs the rule may use, with weights, in the rule's glob order (cached)."""
    key = (policy, rule, linked_hubs)
    cached = _candidate_cache.get(key)
    if cached is not None:
        return cached
    chosen: dict[str, None] = {}
    for pattern in rule.hub_patterns:
        glob = host_glob(pattern)
        for hub in linked_hubs:
            if glob.fullmatch(hub):
                chosen.setdefault(hub)
    return _candidate_cache.put(key, tuple((hub, policy.weight(hub)) for hub in chosen))


def _has_path(payload: Any, path: tuple[str, ...]) -> bool:
    value = payload
    for step in path:
        if not isinstance(value, dict) or step not in value:
            return False
        value = value[step]
    return True
