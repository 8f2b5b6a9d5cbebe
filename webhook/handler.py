"""The allocate handler: one AllocationRequest body in, one ``Answer`` out, one record logged.

Status codes, chosen for what DPS does with them (``docs/protocol/webhook.md`` §4):

    200  assigned: {"iotHubHostName", "initialTwin"?, "payload"?}
    400  a deliberate deny (a rule, or a retired device), or a malformed request: DPS fails the
         registration (400207)
    429  the retired-device check could not be made and RETIRED_CHECK is fail-closed (the
         default): DPS retries later; a possibly retired device is never admitted. Also when a
         decision runs past its time budget (DECISION_BUDGET_SECONDS, ``allocation.budget``):
         work done so far stays cached, so DPS's retry continues from there
    503  the policy cannot be loaded: DPS retries; no device is refused for the operator's mistake

No input produces a 5xx or a traceback: ``handle`` turns what the core and the store raise into
one of the answers above. Every call writes one registration record (``store.records``), and an
assigned device is counted in the inventory. Every store call of one invocation (the retired
check, then the writes) shares one deadline, STORE_TIMEOUT_SECONDS from the start
(``store.deadline``), so storage never costs an invocation more than that in all. If
they fail, the answer stands and the whole record goes to the log as one line marked for replay
and signed with REPLAY_SIGNING_KEY (``store.replay``; ``python -m store replay``), so nothing is
lost. The log never gets the body or payload values, and every value it does get is escaped
(``store.logline.Quoted``), so no request can start a log line of its own.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from allocation import Assignment, Policy, decide, response_body
from allocation.budget import DecisionBudget
from allocation.errors import DecisionBudgetExceeded, PolicyError, RequestError
from allocation.request import AllocationRequest, EnrollmentKind, parse_request_body
from allocation.strict_json import MAX_BODY_BYTES
from sas.registration_id import registration_id_problem
from store.base import InvalidKey, StoreError
from store.deadline import Deadline, call_with_deadline
from store.logline import Quoted
from store.records import (
    DeviceStatus,
    Outcome,
    RegistrationRecord,
    summarize_payload,
)
from store.replay import format_replay_line
from store.runtime import Runtime
from store.settings import DEFAULT_TIMEOUT_SECONDS, REPLAY_KEY_SETTING, RetiredCheck

log = logging.getLogger("webhook.allocate")

RETIRED_RULE = "(retired)"
DECISION_BUDGET_SECONDS = 0.25
UNPARSED_ID = "(unparsed)"


@dataclass(frozen=True)
class _Call:
    """One invocation: when it started (the handler's clock) and its store deadline."""

    started: float
    deadline: Deadline


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


class AllocateHandler:
    def __init__(
        self,
        *,
        policy: Callable[[], Policy],
        runtime: Callable[[], Runtime],
        clock: Callable[[], float] = time.perf_counter,
        decision_budget_seconds: float = DECISION_BUDGET_SECONDS,
    ) -> None:
        self._policy = policy
        self._runtime = runtime
        self._clock = clock
        self._decision_budget_seconds = decision_budget_seconds

    def handle(self, body: bytes) -> Answer:
        call = _Call(started=self._clock(), deadline=self._store_deadline())
        try:
            request = parse_request_body(body)
        except RequestError as error:
            log.warning("allocation rejected: invalid request: %s", Quoted(str(error)))
            answer = Answer(
                400, {"error": "invalid request", "field": error.field, "message": str(error)}
            )
            self._record(_unparsed_id(body), None, Outcome.INVALID_REQUEST, call, reason=str(error))
            return answer

        try:
            policy = self._policy()
        except PolicyError as error:
            log.error("allocation unavailable: policy failed to load: %s", Quoted(str(error)))
            message = "the allocation policy failed to load; see the function log"
            self._record(
                request.registration_id, request, Outcome.RETRY_LATER, call, reason=message
            )
            return Answer(503, {"error": "policy unavailable", "message": message})

        refusal = self._retired_check(request, call)
        if refusal is not None:
            return refusal

        try:
            decision = decide(
                policy,
                request,
                budget=DecisionBudget(self._decision_budget_seconds, clock=self._clock),
            )
        except DecisionBudgetExceeded as error:
            log.error(
                "allocation stopped registration_id=%s: %s",
                Quoted(request.registration_id),
                Quoted(str(error)),
            )
            message = "the decision ran out of time; DPS will retry"
            self._record(
                request.registration_id, request, Outcome.RETRY_LATER, call, reason=str(error)
            )
            return Answer(429, {"error": "retry later", "message": message})
        if isinstance(decision, Assignment):
            ms = self._record(
                request.registration_id,
                request,
                Outcome.ASSIGNED,
                call,
                hub=decision.hub,
                rule=decision.rule,
                strategy=decision.strategy.value,
            )
            log.info(
                "allocation assigned registration_id=%s hub=%s rule=%s strategy=%s "
                "reprovision=%s ms=%.3f",
                Quoted(request.registration_id),
                Quoted(decision.hub),
                Quoted(decision.rule),
                decision.strategy.value,
                request.is_reprovisioning,
                ms,
            )
            return Answer(200, response_body(decision))
        ms = self._record(
            request.registration_id,
            request,
            Outcome.DENIED,
            call,
            rule=decision.rule,
            reason=decision.reason,
        )
        log.info(
            "allocation denied registration_id=%s rule=%s reason=%s ms=%.3f",
            Quoted(request.registration_id),
            Quoted(decision.rule),
            Quoted(decision.reason),
            ms,
        )
        return Answer(400, {"error": "denied", "rule": decision.rule, "reason": decision.reason})

    def _retired_check(self, request: AllocationRequest, call: _Call) -> Answer | None:
        """A refusal when the device is retired, or when that cannot be known and we fail closed."""
        try:
            runtime = self._runtime()
            device = call_with_deadline(
                lambda: runtime.store.get_device(request.registration_id),
                call.deadline,
                what="retired check",
                inline=runtime.store.bounds_own_calls,
            )
        except InvalidKey:
            device = None  # an id that cannot be a table key cannot have been retired
        except StoreError as error:
            fail_open = self._fail_open()
            log.warning(
                "allocation retired check failed registration_id=%s policy=%s: %s",
                Quoted(request.registration_id),
                "fail-open" if fail_open else "fail-closed",
                Quoted(str(error)),
            )
            if fail_open:
                return None
            message = "the device's status could not be checked; DPS will retry"
            self._record(
                request.registration_id, request, Outcome.RETRY_LATER, call, reason=message
            )
            return Answer(429, {"error": "retry later", "message": message})
        if device is None or device.status is not DeviceStatus.RETIRED:
            return None
        reason = "device retired" + (f": {device.retired_reason}" if device.retired_reason else "")
        self._record(
            request.registration_id,
            request,
            Outcome.DENIED,
            call,
            rule=RETIRED_RULE,
            reason=reason,
        )
        log.info(
            "allocation denied registration_id=%s rule=%s",
            Quoted(request.registration_id),
            Quoted(RETIRED_RULE),
        )
        return Answer(400, {"error": "denied", "rule": RETIRED_RULE, "reason": reason})

    def _store_deadline(self) -> Deadline:
        """One bound for every store call of this invocation (STORE_TIMEOUT_SECONDS from now)."""
        try:
            seconds = self._runtime().settings.timeout_seconds
        except StoreError:
            seconds = DEFAULT_TIMEOUT_SECONDS  # the calls will fail anyway; bound them the same
        return Deadline.after(seconds)

    def _fail_open(self) -> bool:
        try:
            return self._runtime().settings.retired_check is RetiredCheck.FAIL_OPEN
        except StoreError:
            return False  # settings that cannot be read never open the gate

    def _record(
        self,
        registration_id: str,
        request: AllocationRequest | None,
        outcome: Outcome,
        call: _Call,
        **decided: Any,
    ) -> float:
        """Write the registration record (and count an assignment); on failure log it for replay."""
        decision_ms = (self._clock() - call.started) * 1000
        failure: StoreError | None = None
        runtime: Runtime | None = None
        try:
            runtime = self._runtime()
        except StoreError as error:
            failure = error
        size, keys = (
            summarize_payload(request.payload, size=request.payload_size) if request else (0, ())
        )
        record = RegistrationRecord(
            time=runtime.clock() if runtime else datetime.now(UTC),
            registration_id=registration_id,
            device_id=request.device_id if request else None,
            sent_registration_id=request.sent_registration_id if request else None,
            enrollment_kind=request.enrollment_kind if request else EnrollmentKind.UNKNOWN,
            enrollment_id=_enrollment_id(request),
            outcome=outcome,
            reprovision=request.is_reprovisioning if request else False,
            previous_hub=request.current_hub if request else None,
            payload_size=size,
            payload_keys=keys,
            decision_ms=round(decision_ms, 3),
            **decided,
        )
        if runtime is not None:
            store = runtime.store

            try:
                call_with_deadline(
                    lambda: store.record_registration(record),
                    call.deadline,
                    what="registration log",
                    inline=store.bounds_own_calls,
                )
                return decision_ms
            except StoreError as error:
                failure = error
        key = runtime.settings.replay_key if runtime is not None else None
        log.warning(
            "registration record not stored (%s)%s; %s",
            Quoted(str(failure)),
            "" if key else f" [unsigned: {REPLAY_KEY_SETTING} is not set]",
            format_replay_line(record, key=key),
        )
        return decision_ms


def _enrollment_id(request: AllocationRequest | None) -> str | None:
    if request is None:
        return None
    if request.enrollment_group_id is not None:
        return request.enrollment_group_id
    return request.registration_id if request.enrollment_kind is EnrollmentKind.INDIVIDUAL else None


def _unparsed_id(body: bytes) -> str:
    """The registration id of a request that failed to parse, when one can be read at all: the
    same rules as a parsed one, so it always fits a key and a replay line."""
    if len(body) > MAX_BODY_BYTES:
        return UNPARSED_ID  # refused before any work; not parsed here either
    try:
        value = json.loads(body)["deviceRuntimeContext"]["registrationId"]
    except (ValueError, TypeError, KeyError, IndexError, RecursionError):
        return UNPARSED_ID
    if not isinstance(value, str) or registration_id_problem(value) is not None:
        return UNPARSED_ID
    return value
