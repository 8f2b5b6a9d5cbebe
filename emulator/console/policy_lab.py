"""The allocation policy, asked questions without registering anything. Pure.

- `try_policy`: the decision the hosted app's policy makes for one registration id (with an
  optional payload, enrollment group and current hub) over the enrollment's linked hubs: rule,
  strategy, hub, initial twin and payload, or the denial and its reason. The same request document
  `python -m webhook decide` builds, and the command that asks it (`decide_command`).
- `hub_moves`: for N synthetic registration ids (a template with `{n}`), where each lands now and
  where it would land if a hub were added (one more linked hub) or drained (no new devices: out of
  the candidates, as weight 0 does for a new device); how many move, from where to where.

Input problems raise `LabError`, naming the field and what was expected.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from allocation import Assignment, Policy, decide, parse_request, response_body
from allocation.errors import RequestError

__all__ = ["MAX_SYNTHETIC", "LabError", "decide_command", "hub_moves", "try_policy"]

MAX_SYNTHETIC = 5000
MAX_ID_CHARS = 128
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-_]{0,252}")


class LabError(ValueError):
    """A question the lab cannot ask; the message names the field."""

    def __init__(self, field: str, expected: str) -> None:
        super().__init__(f"{field}: expected {expected}")
        self.field = field


@dataclass(frozen=True, kw_only=True)
class Question:
    """One registration as DPS would send it to the webhook."""

    registration_id: str
    linked_hubs: Sequence[str]
    group: str | None = None
    payload: Any = None
    current_hub: str | None = None


def _document(question: Question) -> dict[str, Any]:
    context: dict[str, Any] = {"registrationId": question.registration_id}
    if question.current_hub:
        context["currentIotHubHostName"] = question.current_hub
        context["currentDeviceId"] = question.registration_id
    if question.payload is not None:
        context["payload"] = question.payload
    document: dict[str, Any] = {
        "deviceRuntimeContext": context,
        "linkedHubs": list(question.linked_hubs),
    }
    if question.group:
        document["enrollmentGroup"] = {"enrollmentGroupId": question.group}
    return document


def try_policy(policy: Policy, question: Question) -> dict[str, Any]:
    """The policy's decision for one registration, as JSON for the console."""
    if not question.registration_id or len(question.registration_id) > MAX_ID_CHARS:
        raise LabError("registration_id", f"1 to {MAX_ID_CHARS} characters")
    try:
        request = parse_request(_document(question))
    except RequestError as error:
        raise LabError(error.field, error.expected) from None
    decision = decide(policy, request)
    if isinstance(decision, Assignment):
        body = response_body(decision)
        return {
            "outcome": "assigned",
            "rule": decision.rule,
            "strategy": decision.strategy.value,
            "hub": decision.hub,
            "initial_twin": body.get("initialTwin"),
            "payload": body.get("payload"),
        }
    return {"outcome": "denied", "rule": decision.rule, "reason": decision.reason}


def decide_command(policy_file: str, question: Question) -> str:
    """The `python -m webhook decide` command that asks the same question."""
    words = ["python", "-m", "webhook", "decide", policy_file]
    words += ["--registration-id", question.registration_id]
    for hub in question.linked_hubs:
        words += ["--hub", hub]
    if question.group:
        words += ["--group", question.group]
    if question.current_hub:
        words += ["--current-hub", question.current_hub]
    if question.payload is not None:
        import json  # noqa: PLC0415 -- only for this rarely shown option

        words += ["--payload", json.dumps(question.payload, separators=(",", ":"))]
    return shlex.join(words)


def _hub_of(policy: Policy, question: Question) -> str | None:
    try:
        decision = decide(policy, parse_request(_document(question)))
    except RequestError:
        return None
    return decision.hub if isinstance(decision, Assignment) else None


def hub_moves(
    policy: Policy,
    *,
    template: str,
    count: int,
    linked_hubs: Sequence[str],
    group: str | None = None,
    add: str | None = None,
    drain: str | None = None,
) -> dict[str, Any]:
    """Where `count` synthetic ids land now, and after adding or draining one hub."""
    if "{n}" not in template or len(template) > MAX_ID_CHARS - 4:
        raise LabError(
            "template", f"a registration id with {{n}}, at most {MAX_ID_CHARS - 4} characters"
        )
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_SYNTHETIC:
        raise LabError("count", f"a whole number from 1 to {MAX_SYNTHETIC}")
    if (add is None) == (drain is None):
        raise LabError("change", "either add (a hub host name) or drain (a linked hub)")
    hubs = list(linked_hubs)
    if add is not None:
        if not _HOST.fullmatch(add) or add.lower() in (hub.lower() for hub in hubs):
            raise LabError("add", "a host name that is not linked yet")
        changed = [*hubs, add]
    else:
        assert drain is not None  # noqa: S101 -- one of the two, checked above
        if drain.lower() not in (hub.lower() for hub in hubs):
            raise LabError("drain", f"one of the linked hubs ({', '.join(hubs)})")
        changed = [hub for hub in hubs if hub.lower() != drain.lower()]
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    flows: Counter[tuple[str, str]] = Counter()
    for n in range(count):
        registration_id = template.replace("{n}", str(n))
        now = _hub_of(
            policy, Question(registration_id=registration_id, linked_hubs=hubs, group=group)
        )
        then = (
            _hub_of(
                policy, Question(registration_id=registration_id, linked_hubs=changed, group=group)
            )
            if changed
            else None
        )
        before[now or "(denied)"] += 1
        after[then or "(denied)"] += 1
        if now != then:
            flows[(now or "(denied)", then or "(denied)")] += 1
    return {
        "count": count,
        "linked_hubs": hubs,
        "changed_hubs": changed,
        "before": dict(before),
        "after": dict(after),
        "moved": sum(flows.values()),
        "flows": [
            {"from": source, "to": target, "count": moved}
            for (source, target), moved in flows.most_common()
        ],
    }
