"""The allocate handler: one AllocationRequest body in, one ``Answer`` out.

Status codes, chosen for what DPS does with them (../shared/spec/webhook.md §4):

    200  assigned: {"iotHubHostName", "initialTwin"?, "payload"?}
    400  a deliberate deny, or a malformed request: DPS fails the registration (400207)
    503  the policy cannot be loaded: DPS retries (10 times over ~7 minutes), no device is refused
         for the operator's mistake

No input produces a 5xx or a traceback: ``handle`` catches what the core raises and turns it into
one of the answers above. The log gets one line per request with the registration id, outcome,
hub, rule and timing — never the body, which may carry device data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from allocation import Assignment, Policy, decide, response_body
from allocation.errors import PolicyError, RequestError
from allocation.request import parse_request_body

log = logging.getLogger("webhook.allocate")


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


class AllocateHandler:
    def __init__(
        self,
        *,
        policy: Callable[[], Policy],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._policy = policy
        self._clock = clock

    def handle(self, body: bytes) -> Answer:
        started = self._clock()
        try:
            request = parse_request_body(body)
        except RequestError as error:
            log.warning("allocation rejected: invalid request: %s", error)
            return Answer(
                400, {"error": "invalid request", "field": error.field, "message": str(error)}
            )
        try:
            policy = self._policy()
        except PolicyError as error:
            log.error("allocation unavailable: policy failed to load: %s", error)
            return Answer(
                503,
                {
                    "error": "policy unavailable",
                    "message": "the allocation policy failed to load; see the function log",
                },
            )

        decision = decide(policy, request)
        elapsed_ms = (self._clock() - started) * 1000
        if isinstance(decision, Assignment):
            log.info(
                "allocation assigned registration_id=%s hub=%s rule=%s strategy=%s reprovision=%s ms=%.3f",
                request.registration_id,
                decision.hub,
                decision.rule,
                decision.strategy.value,
                request.is_reprovisioning,
                elapsed_ms,
            )
            return Answer(200, response_body(decision))
        log.info(
            "allocation denied registration_id=%s rule=%s reason=%s ms=%.3f",
            request.registration_id,
            decision.rule,
            decision.reason,
            elapsed_ms,
        )
        return Answer(400, {"error": "denied", "rule": decision.rule, "reason": decision.reason})
